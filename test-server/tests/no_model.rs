// SPDX-License-Identifier: MPL-2.0
//! Without the speech model the server still serves tone-coded test audio exactly, and speech
//! gets no text (the missing model is reported once, on stderr). Its own test binary: the
//! recogniser is loaded once per process.

#[path = "integration/common/mod.rs"]
mod common;

use common::*;
use fireworks_test_server::evaluate::{librivox_clips, read_wav};
use fireworks_test_server::recognizer::{Recognizer, MODEL_DIR_ENV};
use fireworks_test_server::{synthesize_utterances, ServerConfig, TestServer};

#[tokio::test]
async fn without_the_model_speech_gets_no_text_and_test_audio_stays_exact() {
    let empty = std::env::temp_dir().join(format!("fireworksstt-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    // Edition 2021: set before the recogniser is first asked for (nothing else runs here).
    std::env::set_var(MODEL_DIR_ENV, &empty);
    assert!(Recognizer::shared().is_none());

    let server = TestServer::start(ServerConfig::default()).unwrap();
    let clip = &librivox_clips().unwrap()[1];
    let (_, _, speech) = read_wav(&clip.path).unwrap();
    let mut bytes: Vec<u8> = speech.iter().flat_map(|s| s.to_le_bytes()).collect();
    bytes.extend(vec![0u8; 64000]);
    let mut ws = open(&server, "").await;
    send_audio(&mut ws, &bytes, 3200).await;
    send_text(&mut ws, r#"{"checkpoint_id":"c1"}"#).await;
    // The echo is the only answer: no transcript for speech.
    let echo = recv_json(&mut ws).await;
    assert_eq!(echo["checkpoint_id"], "c1", "{echo}");
    client_close(&mut ws).await;

    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let mut ws = open(&server, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 3200).await;
    let msgs = collect_finals(&mut ws, 2).await;
    let finals: Vec<String> = msgs.iter().filter(|m| is_final(m)).map(compact).collect();
    assert_eq!(
        finals,
        ["0:hello* world*", "0:hello* world* | 1:how* are* you*"]
    );
    client_close(&mut ws).await;
    let _ = std::fs::remove_dir(&empty);
}
