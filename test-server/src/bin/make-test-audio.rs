// SPDX-License-Identifier: MPL-2.0
//! Writes test audio (WAV) that the test server transcribes as the given utterances.
//! See `make-test-audio --help`.

fn main() -> std::process::ExitCode {
    fireworks_test_server::cli::make_test_audio_main()
}
