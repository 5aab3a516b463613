// SPDX-License-Identifier: MPL-2.0
//! The protocol on real speech (needs the model: ./scripts/setup.sh): a checkpoint finalizes the
//! utterance in progress before its echo, state-clear forgets it, trace is answered, a
//! language the model cannot do is an error naming what is supported, and `vad_kwargs` and
//! `skip_vad` tune and bypass the voice-activity detector.

use crate::common;

use common::*;
use fireworks_test_server::evaluate::{librivox_clips, read_wav};
use fireworks_test_server::{ServerConfig, TestServer};
use serde_json::Value;
use std::time::Duration;

/// The first LibriVox clip (7 s, one sentence) as S16LE bytes.
fn clip_bytes() -> Vec<u8> {
    let clip = &librivox_clips().unwrap()[0];
    let (_, _, s) = read_wav(&clip.path).unwrap();
    s.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Text messages until one satisfies `stop` (included), bounded.
async fn until(ws: &mut Ws, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        match recv(ws, Duration::from_secs(60)).await {
            Recv::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let done = stop(&v);
                all.push(v);
                if done {
                    return all;
                }
            }
            other => panic!("expected a text message, got {other:?} after {all:?}"),
        }
    }
}

#[tokio::test]
async fn a_checkpoint_finalizes_speech_before_its_echo_and_trace_is_answered() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut ws = open(&server, "timestamp_granularities=word").await;
    let bytes = clip_bytes();
    // Half the sentence, then a trace and a checkpoint in the middle of the utterance.
    send_audio(&mut ws, &bytes[..bytes.len() / 2], 3200).await;
    send_text(
        &mut ws,
        r#"{"event_id":"e1","object":"stt.input.trace","trace_id":"t1"}"#,
    )
    .await;
    send_text(&mut ws, r#"{"checkpoint_id":"mid"}"#).await;
    let msgs = until(&mut ws, |v| v.get("checkpoint_id").is_some()).await;
    assert!(msgs
        .iter()
        .any(|v| v["object"] == "stt.output.trace" && v["trace_id"] == "t1"));
    let transcripts: Vec<&Value> = msgs
        .iter()
        .filter(|v| v.get("segments").is_some())
        .collect();
    let last = transcripts.last().expect("a transcript before the echo");
    assert!(is_final(last), "{last}");
    let text = last["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("john dashwood"), "{text}");
    assert_eq!(last["segments"][0]["id"], 0);
    // Word times lie inside the audio sent and rise.
    let mut prev = 0.0;
    for s in last["segments"].as_array().unwrap() {
        for w in s["words"].as_array().unwrap() {
            let (a, b) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
            assert!(a >= prev && b >= a && b <= bytes.len() as f64 / 2.0 / 32000.0 + 1e-9);
            prev = a;
        }
    }
    client_close(&mut ws).await;
    assert_eq!(server.connection(0).unwrap().finals.len(), 1);
}

#[tokio::test]
async fn state_clear_forgets_the_utterance_in_progress() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut ws = open(&server, "").await;
    let bytes = clip_bytes();
    send_audio(&mut ws, &bytes[..bytes.len() / 2], 3200).await;
    send_text(
        &mut ws,
        r#"{"event_id":"c","object":"stt.state.clear","reset_id":"r1"}"#,
    )
    .await;
    // Then two seconds of silence and a checkpoint: nothing to finalize.
    send_audio(&mut ws, &vec![0u8; 64000], 3200).await;
    send_text(&mut ws, r#"{"checkpoint_id":"after"}"#).await;
    let msgs = until(&mut ws, |v| v.get("checkpoint_id").is_some()).await;
    assert!(msgs
        .iter()
        .any(|v| v["object"] == "stt.state.cleared" && v["reset_id"] == "r1"));
    assert!(!msgs.iter().any(is_final), "{msgs:?}");
    client_close(&mut ws).await;
    assert!(server.connection(0).unwrap().finals.is_empty());
}

#[tokio::test]
async fn another_language_is_an_error_naming_what_is_supported() {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut ws = open(&server, "language=de").await;
    send_audio(&mut ws, &clip_bytes(), 3200).await;
    let msgs = until(&mut ws, |v| v.get("error").is_some()).await;
    let error = msgs.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(error.contains("supported languages: en"), "{error}");
    match recv(&mut ws, T).await {
        Recv::Close(Some((code, _))) => assert_eq!(code, 1003),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// Words sent before the echo of a checkpoint sent after the clip, on a session opened with
/// `query`.
async fn words_with(query: &str) -> Vec<String> {
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let mut ws = open(&server, query).await;
    send_audio(&mut ws, &clip_bytes(), 3200).await;
    send_text(&mut ws, r#"{"checkpoint_id":"end"}"#).await;
    let msgs = until(&mut ws, |v| v.get("checkpoint_id").is_some()).await;
    client_close(&mut ws).await;
    msgs.iter()
        .filter(|v| is_final(v))
        .flat_map(|v| v["segments"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["words"].as_array().cloned().unwrap_or_default())
        .map(|w| w["word"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn vad_kwargs_tune_the_detector_and_skip_vad_bypasses_it() {
    // The detector asked for 10 s of speech before an utterance opens: the 7 s sentence
    // never opens one, so nothing is transcribed.
    let strict = "vad_kwargs=%7B%22min_speech_duration_ms%22%3A10000%7D";
    assert!(words_with(strict).await.is_empty());
    // The same with the gate off: every stretch of sound is decoded.
    let words = words_with(&format!("{strict}&skip_vad=true")).await;
    let text = words.join(" ").to_lowercase();
    assert!(text.contains("dashwood"), "{text}");
    // The seed's own example tunes the threshold and still hears the sentence.
    let words = words_with("vad_kwargs=%7B%22threshold%22%3A0.15%7D").await;
    assert!(
        words.join(" ").to_lowercase().contains("dashwood"),
        "{words:?}"
    );
}
