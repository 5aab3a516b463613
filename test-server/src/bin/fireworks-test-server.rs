// SPDX-License-Identifier: MPL-2.0
//! Runs the local Fireworks-compatible streaming speech-to-text test server.
//! See `fireworks-test-server --help`.

fn main() -> std::process::ExitCode {
    fireworks_test_server::cli::run_from_args()
}
