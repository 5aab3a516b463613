// SPDX-License-Identifier: MPL-2.0
//! The integration tests, as modules of one test binary: linking the plugin, the test server
//! and CTranslate2 once instead of once per file. Run one module with a filter, e.g.
//! `cargo test --test integration transcribe::`.
//!
//! Tests run in parallel threads of one process, so a test that needs the process to itself
//! (counting its threads or file descriptors, setting GStreamer's debug level before it
//! initializes, loading plugins into its registry or ending it on a hang) runs its body in a
//! child process of this binary: see `common::child` (`teardown`, `secrets`, `transcriberbin`).

#[macro_use]
mod common;

mod connect_messages;
mod drain_recovery;
mod element;
mod errors;
mod examples;
mod fault_matrix;
mod gst_launch;
mod install;
mod live;
mod live_input;
mod live_options;
mod output_path;
mod robustness;
mod secrets;
mod setup_elements;
mod slow_recogniser;
mod speech;
mod teardown;
mod tls;
mod transcribe;
mod transcriber_conventions;
mod transcriberbin;
mod untrusted_input;
