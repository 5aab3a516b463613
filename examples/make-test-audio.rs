// SPDX-License-Identifier: MPL-2.0
//! Writes a WAV file that the bundled test server transcribes as the given utterances:
//!
//!     cargo run --example make-test-audio -- speech.wav "hello world" "how are you"
//!
//! Each letter is a short tone whose loudness encodes it; silence separates words and
//! utterances. `--help` lists the timing switches.

fn main() -> std::process::ExitCode {
    fireworks_test_server::cli::make_test_audio_main()
}
