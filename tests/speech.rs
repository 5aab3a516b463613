//! Real speech, end to end: appsrc → fireworksstt → fakesink against the bundled server's
//! Whisper recogniser.

mod common;

use common::*;
use fireworks_test_server::evaluate::{librivox_clips, read_wav, word_error_rate};

#[test]
fn librivox_smoke() {
    let clips = librivox_clips().unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    for clip in &clips {
        let (_, _, samples) = read_wav(&clip.path).unwrap();
        let run = run_audio(&samples, &Feed::default(), |stt| point_at(stt, &server));
        let hyp = run.finals().join(" ");
        eprintln!(
            "{} | {} | {:.3}",
            clip.reference,
            hyp,
            word_error_rate(&clip.reference, &hyp)
        );
    }
}
