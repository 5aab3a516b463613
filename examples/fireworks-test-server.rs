// SPDX-License-Identifier: MPL-2.0
//! The bundled local Fireworks-compatible server, for trying the element without a key or a
//! network:
//!
//!     cargo run --example fireworks-test-server -- --port 8765
//!
//! then point fireworksstt at it with `base-url=ws://127.0.0.1:8765/v1 api-key=anything`.
//! It transcribes the test audio that `make-test-audio` writes. `--help` lists its switches.

fn main() -> std::process::ExitCode {
    fireworks_test_server::cli::run_from_args()
}
