// SPDX-License-Identifier: MPL-2.0
//! The test server's tests, one binary (each binary links CTranslate2, so one link instead of
//! four). `tests/no_model.rs` stays a binary of its own: it points the model directory
//! environment variable at an empty folder for its whole process.

mod common;
mod faults;
mod protocol;
mod speech_protocol;
mod tls;
