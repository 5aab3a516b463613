// SPDX-License-Identifier: MPL-2.0
//! The server's protocol behaviour, driven by a raw tokio-tungstenite client.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use fireworks_test_server::audio::{synthesize, Script, SplitMix64};
use fireworks_test_server::{
    synthesize_utterances, ConnectionEnd, ServerConfig, TestServer, STREAMING_PATH,
};
use serde_json::{json, Value};

const GRAN: &str = "timestamp_granularities=word&timestamp_granularities=segment";

fn server() -> TestServer {
    TestServer::start(ServerConfig::default()).unwrap()
}

#[tokio::test]
async fn base_url_and_streaming_url() {
    let s = server();
    assert_eq!(
        s.base_url(),
        format!("ws://127.0.0.1:{}/v1", s.addr().port())
    );
    assert_eq!(
        s.streaming_url(),
        format!("{}/audio/transcriptions/streaming", s.base_url())
    );
    assert_ne!(s.addr().port(), 0);
}

#[tokio::test]
async fn auth_forms_are_accepted() {
    let s = TestServer::start(ServerConfig::default().with_api_key("sekret")).unwrap();
    let mut a = connect(&s, "text_timeout_seconds=1.0", Some("sekret"))
        .await
        .expect("raw header");
    client_close(&mut a).await;
    let mut b = connect(&s, "", Some("Bearer sekret"))
        .await
        .expect("bearer");
    client_close(&mut b).await;
    let mut c = connect(&s, "Authorization=sekret", None)
        .await
        .expect("query raw");
    client_close(&mut c).await;
    let mut d = connect(&s, "Authorization=Bearer%20sekret", None)
        .await
        .expect("query bearer");
    client_close(&mut d).await;

    assert!(s.wait_until_closed(3, T));
    let r = s.connections();
    assert_eq!(r[0].authorization_header.as_deref(), Some("sekret"));
    assert_eq!(r[0].authorization_query, None);
    assert!(!r[0].raw_query.as_deref().unwrap_or("").contains("sekret"));
    assert_eq!(r[1].authorization_header.as_deref(), Some("Bearer sekret"));
    assert_eq!(r[2].authorization_query.as_deref(), Some("sekret"));
    assert_eq!(r[3].authorization_query.as_deref(), Some("Bearer sekret"));
    assert_eq!(r[0].header("User-Agent"), Some("raw-test-client"));
    for c in &r {
        assert!(c.upgraded_ok());
        assert_eq!(
            c.end,
            Some(ConnectionEnd::ClientClosed {
                code: None,
                reason: String::new()
            })
        );
    }
}

#[tokio::test]
async fn auth_failures_get_401() {
    let s = TestServer::start(ServerConfig::default().with_api_key("sekret")).unwrap();
    for (query, auth) in [
        ("", None),
        ("", Some("wrong")),
        ("", Some("Bearer wrong")),
        ("Authorization=wrong", None),
        ("Authorization=sekret", Some("wrong")),
    ] {
        let err = connect(&s, query, auth).await.expect_err("refused");
        let (status, body) = http_status(&err).expect("HTTP error");
        assert_eq!(status, 401, "{query} {auth:?}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("API key"));
    }
    assert!(s.wait_until_closed(4, T));
    for c in s.connections() {
        assert_eq!(c.upgrade_status, Some(401));
        assert!(matches!(
            c.end,
            Some(ConnectionEnd::Rejected { status: 401, .. })
        ));
    }
}

#[tokio::test]
async fn no_configured_key_accepts_anything() {
    let s = server();
    let mut ws = connect(&s, "", None).await.expect("no key");
    client_close(&mut ws).await;
    let mut ws = connect(&s, "", Some("anything")).await.expect("any key");
    client_close(&mut ws).await;
}

#[tokio::test]
async fn wrong_path_is_404() {
    let s = server();
    for path in [
        "/v1/audio/transcriptions",
        "/v1/audio/transcriptions/streaming/",
        "/v1//audio/transcriptions/streaming",
        "/audio/transcriptions/streaming",
        "/",
    ] {
        let err = connect_with(&s, path, None, None).await.expect_err(path);
        assert_eq!(http_status(&err).map(|h| h.0), Some(404), "{path}");
    }
    assert!(s.wait_until_closed(4, T));
    assert_eq!(s.connection(0).unwrap().path, "/v1/audio/transcriptions");
}

#[tokio::test]
async fn query_validation() {
    let s = server();
    for bad in [
        "text_timeout_seconds=0.9",
        "text_timeout_seconds=30",
        "text_timeout_seconds=abc",
        "response_format=json",
        "timestamp_granularities=char",
        "skip_vad=perhaps",
        "temperature=warm",
        "vad_kwargs=threshold",
        "language=klingon",
    ] {
        let err = connect(&s, bad, None).await.expect_err(bad);
        let (status, body) = http_status(&err).unwrap();
        assert_eq!(status, 400, "{bad}");
        let key = bad.split('=').next().unwrap();
        assert!(body.contains(key), "{bad}: {body}");
    }
    let good = "model=fireworks-asr-large&language=en&prompt=Um%2C+here%27s&temperature=0.0&skip_vad=False&vad_kwargs=%7B%22threshold%22%3A+0.15%7D&text_timeout_seconds=2.5&response_format=verbose_json&timestamp_granularities=word&timestamp_granularities=segment&max_retries=1&foo=bar";
    let mut ws = connect(&s, good, None).await.expect("reference query");
    client_close(&mut ws).await;
    let mut ws = connect(
        &s,
        "text_timeout_seconds=2&timestamp_granularities=word%2Csegment&skip_vad=true",
        None,
    )
    .await
    .expect("int timeout, comma list, lowercase bool");
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(10, T));
    let r = s.connection(9).unwrap();
    assert_eq!(r.unknown_query_keys, vec!["max_retries", "foo"]);
    assert_eq!(r.query_value("prompt"), Some("Um, here's"));
    assert_eq!(
        r.query_values("timestamp_granularities"),
        vec!["word", "segment"]
    );
    assert_eq!(r.query[0], ("model".into(), "fireworks-asr-large".into()));
    assert_eq!(r.query_value("vad_kwargs"), Some("{\"threshold\": 0.15}"));
}

#[tokio::test]
async fn interims_then_finals_with_exact_times() {
    let s = server();
    let audio = synthesize_utterances(&["hello world", "how are you"]).unwrap();
    let mut ws = open(&s, &format!("text_timeout_seconds=1.0&{GRAN}&language=en")).await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    let msgs = collect_finals(&mut ws, 2).await;
    let c: Vec<String> = msgs.iter().map(compact).collect();
    assert_eq!(
        c,
        vec![
            "0:he",
            "0:hello",
            "0:hello wo",
            "0:hello world",
            "0:hello* world*",
            "0:hello* world* | 1:ho",
            "0:hello* world* | 1:how",
            "0:hello* world* | 1:how ar",
            "0:hello* world* | 1:how are",
            "0:hello* world* | 1:how are yo",
            "0:hello* world* | 1:how are you",
            "0:hello* world* | 1:how* are* you*",
        ]
    );
    // Exact word and segment times on the finals.
    let first = &msgs[4];
    let last = &msgs[11];
    let mut words = Vec::new();
    for seg in [&first["segments"][0], &last["segments"][1]] {
        for w in seg["words"].as_array().unwrap() {
            words.push((
                w["word"].as_str().unwrap().to_string(),
                w["start"].as_f64().unwrap(),
                w["end"].as_f64().unwrap(),
            ));
        }
    }
    let expected: Vec<(String, f64, f64)> = audio
        .words
        .iter()
        .map(|w| (w.text.clone(), w.start_seconds(), w.end_seconds()))
        .collect();
    assert_eq!(words, expected);
    let seg1 = &last["segments"][1];
    assert_eq!(seg1["start"].as_f64(), Some(audio.words[2].start_seconds()));
    assert_eq!(seg1["end"].as_f64(), Some(audio.words[4].end_seconds()));
    assert_eq!(last["text"], "hello world how are you");
    assert_eq!(seg1["text"], "how are you");
    assert_eq!(last["task"], "transcribe");
    assert_eq!(last["language"], "en");
    assert_eq!(seg1["words"][0]["probability"], 0.9);
    assert_eq!(seg1["words"][0]["hallucination_score"], 0.0);

    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let r = s.connection(0).unwrap();
    assert_eq!(r.final_texts(), vec!["hello world", "how are you"]);
    assert_eq!(r.finals[1].words[0].segment_id, 1);
    assert_eq!(
        r.finals[1].words[0].start_sample,
        audio.words[2].start_sample
    );
    assert_eq!(r.audio, audio.to_le_bytes());
    assert_eq!(r.audio_bytes, audio.samples.len() as u64 * 2);
    assert_eq!(r.sent_transcript_count, 12);
    assert_eq!(r.sent_json(), msgs);
    // Finalized after exactly 1 s of silence (in samples).
    assert_eq!(r.finals[0].at_sample, audio.words[1].end_sample + 16000);
}

#[tokio::test]
async fn granularities_control_times_and_language_is_echoed() {
    let s = server();
    let audio = synthesize_utterances(&["ab"]).unwrap();
    for (query, word_times, seg_times) in [
        ("language=de", false, false),
        ("language=de&timestamp_granularities=word", true, false),
        ("language=de&timestamp_granularities=segment", false, true),
    ] {
        let mut ws = open(&s, query).await;
        send_audio(&mut ws, &audio.to_le_bytes(), 3200).await;
        let msgs = collect_finals(&mut ws, 1).await;
        for m in &msgs {
            assert_eq!(m["language"], "de");
            let seg = &m["segments"][0];
            assert_eq!(seg.get("start").is_some(), seg_times, "{query}");
            assert_eq!(seg.get("end").is_some(), seg_times, "{query}");
            let w = &seg["words"][0];
            assert_eq!(w.get("start").is_some(), word_times, "{query}");
            assert_eq!(w["language"], "de");
        }
        client_close(&mut ws).await;
    }
}

#[tokio::test]
async fn segment_ids_restart_per_connection_and_split_by_word_count() {
    let s = TestServer::start(ServerConfig::default().with_max_words_per_segment(2)).unwrap();
    let audio = synthesize_utterances(&["a b c", "d"]).unwrap();
    for _ in 0..2 {
        let mut ws = open(&s, "").await;
        send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
        let msgs = collect_finals(&mut ws, 2).await;
        let finals: Vec<String> = msgs.iter().filter(|m| is_final(m)).map(compact).collect();
        assert_eq!(finals, vec!["0:a* b* | 1:c*", "1:c* | 2:d*"]);
        client_close(&mut ws).await;
    }
}

#[tokio::test]
async fn text_timeout_is_measured_in_audio_samples() {
    let s = server();
    // 1.5 s of silence after the utterance: finalized with timeout 1.0, not with 2.0.
    let audio =
        synthesize(&Script::new().utterance_then("ok", Duration::from_millis(1500))).unwrap();
    let mut ws = open(&s, "text_timeout_seconds=2.0&skip_vad=True").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(
        &mut ws,
        r#"{"object":"stt.input.trace","trace_id":"t","event_id":"e"}"#,
    )
    .await;
    let mut msgs = Vec::new();
    loop {
        let v = recv_json(&mut ws).await;
        if v["object"] == "stt.output.trace" {
            break;
        }
        msgs.push(v);
    }
    assert!(!msgs.iter().any(is_final));
    // 0.5 s more silence reaches 2.0 s.
    send_audio(&mut ws, &vec![0u8; 16000], 1600).await;
    let v = recv_json(&mut ws).await;
    assert!(is_final(&v), "{v}");
    client_close(&mut ws).await;
}

#[tokio::test]
async fn checkpoint_finalizes_then_echoes_and_stays_open() {
    let s = server();
    let audio = synthesize(&Script::new().utterance_then("hi there", Duration::ZERO)).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(&mut ws, r#"{"checkpoint_id": "final"}"#).await;
    let mut msgs = Vec::new();
    loop {
        let v = recv_json(&mut ws).await;
        if v.get("checkpoint_id").is_some() {
            assert_eq!(v, json!({"checkpoint_id": "final"}));
            break;
        }
        msgs.push(v);
    }
    let c: Vec<String> = msgs.iter().map(compact).collect();
    assert_eq!(c.last().unwrap(), "0:hi* there*");
    assert_eq!(c[c.len() - 2], "0:hi there");
    // Still open: a trace is answered.
    send_text(
        &mut ws,
        r#"{"event_id":"e1","object":"stt.input.trace","trace_id":"x"}"#,
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["trace_id"], "x");
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let r = s.connection(0).unwrap();
    assert_eq!(r.checkpoint_ids(), vec!["final"]);
    assert!(r.checkpoints[0].echoed);
    assert_eq!(
        r.checkpoints[0].audio_bytes_before,
        audio.samples.len() as u64 * 2
    );
    assert_eq!(r.text_frames[0], r#"{"checkpoint_id": "final"}"#);
    assert_eq!(r.final_texts(), vec!["hi there"]);
}

#[tokio::test]
async fn checkpoint_without_finalize_only_echoes() {
    let s = TestServer::start(ServerConfig::default().with_finalize_on_checkpoint(false)).unwrap();
    let audio =
        synthesize(&Script::new().utterance_then("hi there", Duration::from_millis(200))).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(&mut ws, r#"{"checkpoint_id":"final"}"#).await;
    let mut msgs = Vec::new();
    loop {
        let v = recv_json(&mut ws).await;
        if v.get("checkpoint_id").is_some() {
            break;
        }
        msgs.push(v);
    }
    assert!(!msgs.iter().any(is_final));
    assert_eq!(compact(msgs.last().unwrap()), "0:hi there");
    client_close(&mut ws).await;
}

#[tokio::test]
async fn close_after_echo_closes_with_1000() {
    let s = TestServer::start(ServerConfig::default().with_close_after_echo(true)).unwrap();
    let audio = synthesize_utterances(&["ok"]).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(&mut ws, r#"{"checkpoint_id":42}"#).await;
    let mut got_echo = false;
    loop {
        match recv(&mut ws, T).await {
            Recv::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("checkpoint_id").is_some() {
                    assert_eq!(v, json!({"checkpoint_id": 42}));
                    got_echo = true;
                }
            }
            Recv::Close(frame) => {
                assert!(got_echo);
                assert_eq!(frame.map(|f| f.0), Some(1000));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(recv(&mut ws, T).await, Recv::End);
    assert!(s.wait_until_closed(0, T));
    let r = s.connection(0).unwrap();
    assert_eq!(
        r.end,
        Some(ConnectionEnd::ServerClosed {
            code: 1000,
            reason: String::new()
        })
    );
    assert_eq!(r.checkpoint_ids(), vec!["42"]);
}

#[tokio::test]
async fn trace_and_state_clear_are_answered() {
    let s = server();
    let mut ws = open(&s, "").await;
    send_text(
        &mut ws,
        r#"{"event_id":"streaming_complete","object":"stt.input.trace","trace_id":"final"}"#,
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"event_id":"streaming_complete","object":"stt.output.trace","trace_id":"final"})
    );
    // Half an utterance, then clear: it is never finalized.
    let audio =
        synthesize(&Script::new().utterance_then("abc def", Duration::from_millis(100))).unwrap();
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(
        &mut ws,
        r#"{"event_id":"c1","object":"stt.state.clear","reset_id":"r1"}"#,
    )
    .await;
    loop {
        let v = recv_json(&mut ws).await;
        if v["object"] == "stt.state.cleared" {
            assert_eq!(
                v,
                json!({"event_id":"c1","object":"stt.state.cleared","reset_id":"r1"})
            );
            break;
        }
        assert!(!is_final(&v));
    }
    send_audio(&mut ws, &vec![0u8; 96000], 1600).await;
    let more = synthesize_utterances(&["xy"]).unwrap();
    send_audio(&mut ws, &more.to_le_bytes(), 1600).await;
    let msgs = collect_finals(&mut ws, 1).await;
    // No window left from before the clear; ids keep rising.
    assert_eq!(compact(msgs.last().unwrap()), "1:xy*");
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let r = s.connection(0).unwrap();
    assert_eq!(r.trace_ids, vec!["final"]);
    assert_eq!(r.clear_ids, vec!["r1"]);
    assert_eq!(r.final_texts(), vec!["xy"]);
}

#[tokio::test]
async fn other_text_frames_are_ignored_and_recorded() {
    let s = server();
    let mut ws = open(&s, "").await;
    for t in [
        "not json",
        "[1,2]",
        "{}",
        r#"{"object":"unknown"}"#,
        "\"str\"",
        "{\"a\":",
    ] {
        send_text(&mut ws, t).await;
    }
    send_text(&mut ws, r#"{"object":"stt.input.trace","trace_id":7}"#).await;
    let v = recv_json(&mut ws).await;
    assert_eq!(v["trace_id"], 7);
    assert_eq!(v["object"], "stt.output.trace");
    assert!(v["event_id"].is_string());
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    assert_eq!(s.connection(0).unwrap().text_frames.len(), 7);
}

#[tokio::test]
async fn any_chunking_gives_the_same_transcript() {
    let s = server();
    let audio = synthesize_utterances(&["chunks of odd size", "bookkeeper llama"]).unwrap();
    let bytes = audio.to_le_bytes();
    let mut rng = SplitMix64::new(99);
    let mut ws = open(&s, GRAN).await;
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = (rng.range(1, 4001) as usize).min(rest.len());
        send_audio(&mut ws, &rest[..n], n).await;
        rest = &rest[n..];
    }
    let _ = collect_finals(&mut ws, 2).await;
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let r = s.connection(0).unwrap();
    let got: Vec<(String, u64, u64)> = r
        .finals
        .iter()
        .flat_map(|f| f.words.iter())
        .map(|w| (w.text.clone(), w.start_sample, w.end_sample))
        .collect();
    let want: Vec<(String, u64, u64)> = audio
        .words
        .iter()
        .map(|w| (w.text.clone(), w.start_sample, w.end_sample))
        .collect();
    assert_eq!(got, want);
    assert_eq!(r.audio, bytes);
}

#[tokio::test]
async fn lost_and_duplicated_audio_show_in_the_text() {
    let s = server();
    let audio = synthesize_utterances(&["abcdef"]).unwrap();
    let bytes = audio.to_le_bytes();
    // Lose the second 1920-byte chunk ("c" and "d" are 960 bytes each: lose them).
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &bytes[..1920], 1920).await;
    send_audio(&mut ws, &bytes[3840..], 1600).await;
    let msgs = collect_finals(&mut ws, 1).await;
    assert_eq!(msgs.last().unwrap()["text"], "abef");
    // Duplicate "b": a run of two "b" blocks decodes as "bb".
    let mut ws2 = open(&s, "").await;
    send_audio(&mut ws2, &bytes[..1920], 1920).await;
    send_audio(&mut ws2, &bytes[960..], 1600).await;
    let msgs = collect_finals(&mut ws2, 1).await;
    assert_eq!(msgs.last().unwrap()["text"], "abbcdef");
    client_close(&mut ws).await;
    client_close(&mut ws2).await;
}

#[tokio::test]
async fn scenario_string_ids() {
    let s = TestServer::start(ServerConfig::default().with_string_ids(true)).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(
        &mut ws,
        &synthesize_utterances(&["hi"]).unwrap().to_le_bytes(),
        1600,
    )
    .await;
    let v = recv_json(&mut ws).await;
    assert_eq!(v["segments"][0]["id"], "0");
    client_close(&mut ws).await;
}

#[tokio::test]
async fn scenario_grow_finalized_segment() {
    let s = TestServer::start(
        ServerConfig::default()
            .with_grow_finalized_segment(true)
            .with_revise_partial_words(false),
    )
    .unwrap();
    let mut ws = open(&s, "").await;
    let audio = synthesize_utterances(&["hello world", "again"]).unwrap();
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    let c: Vec<String> = collect_finals(&mut ws, 2)
        .await
        .iter()
        .map(compact)
        .collect();
    assert_eq!(
        c,
        vec![
            "0:hello",
            "0:hello world",
            "0:hello* world*",
            "0:hello* world* again",
            "0:hello* world* again*"
        ]
    );
    client_close(&mut ws).await;
}

#[tokio::test]
async fn scenario_retract_trailing_segment() {
    let s = TestServer::start(
        ServerConfig::default()
            .with_retract_trailing_segment(true)
            .with_revise_partial_words(false),
    )
    .unwrap();
    let mut ws = open(&s, "").await;
    let audio = synthesize_utterances(&["one two three"]).unwrap();
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    let c: Vec<String> = collect_finals(&mut ws, 1)
        .await
        .iter()
        .map(compact)
        .collect();
    assert_eq!(
        c,
        vec![
            "0:one",
            "0:one | 1:two",
            "0:one two",
            "0:one two three",
            "0:one* two* three*"
        ]
    );
    client_close(&mut ws).await;
}

#[tokio::test]
async fn client_close_codes_and_drops_are_recorded() {
    let s = server();
    let mut ws = open(&s, "").await;
    let _ = ws
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1001u16.into(),
            reason: "bye".into(),
        }))
        .await;
    // The server's reply echoes the close frame.
    assert_eq!(
        recv(&mut ws, T).await,
        Recv::Close(Some((1001, "bye".into())))
    );
    assert_eq!(recv(&mut ws, T).await, Recv::End);
    let ws2 = open(&s, "").await;
    drop(ws2);
    assert!(s.wait_until_closed(1, T));
    let r = s.connections();
    assert_eq!(
        r[0].end,
        Some(ConnectionEnd::ClientClosed {
            code: Some(1001),
            reason: "bye".into()
        })
    );
    assert!(matches!(
        r[1].end,
        Some(ConnectionEnd::ClientDropped { .. })
    ));
    assert!(r[1].ended.unwrap() >= r[1].started);
    assert!(r[1].upgraded.is_some());
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_hurt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server();
    // Not HTTP at all.
    let mut raw = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, raw.read_to_end(&mut buf)).await;
    // Plain HTTP GET without upgrade headers.
    let mut raw = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    raw.write_all(b"GET /v1/audio/transcriptions/streaming HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(T, raw.read_to_end(&mut buf)).await;
    // Connect and vanish.
    drop(tokio::net::TcpStream::connect(s.addr()).await.unwrap());
    assert!(s.wait_until_closed(2, T));
    for c in s.connections() {
        assert!(
            matches!(c.end, Some(ConnectionEnd::HandshakeFailed { .. })),
            "{:?}",
            c.end
        );
    }
    // The server still works.
    let mut ws = open(&s, "").await;
    send_text(&mut ws, r#"{"checkpoint_id":{"nested":[1]}}"#).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"checkpoint_id":{"nested":[1]}})
    );
    // Odd single bytes of audio.
    for _ in 0..5 {
        send_audio(&mut ws, &[0x7f], 1).await;
    }
    send_audio(&mut ws, &[], 1).await;
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(3, T));
    assert_eq!(s.connection(3).unwrap().audio_bytes, 5);
}

#[tokio::test]
async fn dropping_the_server_closes_connections_and_frees_the_port() {
    let s = server();
    let addr = s.addr();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &[0u8; 3200], 1600).await;
    assert!(s.wait_for_audio_bytes(0, 3200, T));
    let start = Instant::now();
    // Drop on a blocking thread: it waits for our close reply, which this runtime must send.
    let dropper = tokio::task::spawn_blocking(move || drop(s));
    match recv(&mut ws, T).await {
        Recv::Close(Some((code, _))) => assert_eq!(code, 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    assert_eq!(recv(&mut ws, T).await, Recv::End);
    dropper.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn wait_helpers_are_bounded() {
    let s = server();
    let start = Instant::now();
    assert!(!s.wait_for_connections(1, Duration::from_millis(50)));
    assert!(!s.wait_until_closed(0, Duration::from_millis(50)));
    assert!(!s.wait_for_audio_bytes(0, 1, Duration::from_millis(50)));
    assert!(!s.wait_for_finals(0, 1, Duration::from_millis(50)));
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(s.connection(0).is_none());
    assert_eq!(s.connection_count(), 0);
}

#[tokio::test]
async fn the_path_constant_matches_the_base_url() {
    let s = server();
    assert!(s.streaming_url().ends_with(STREAMING_PATH));
}

#[test]
fn binary_prints_its_url_and_serves() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fireworks-test-server"))
        .args(["--port", "0", "--exit-on-stdin-eof", "--close-after-echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("fireworks test server listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_string();
    assert!(url.starts_with("ws://127.0.0.1:") && url.ends_with("/v1"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        let stream_url = format!("{url}/audio/transcriptions/streaming");
        let host = url
            .trim_start_matches("ws://")
            .trim_end_matches("/v1")
            .to_string();
        let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(stream_url, tcp)
            .await
            .unwrap();
        let audio = synthesize(&Script::new().utterance_then("cli", Duration::ZERO)).unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::binary(
            audio.to_le_bytes(),
        ))
        .await
        .unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"checkpoint_id":"final"}"#,
        ))
        .await
        .unwrap();
        let mut texts = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(T, ws.next()).await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                texts.push(t.as_str().to_string());
            }
        }
        assert_eq!(texts.last().unwrap(), r#"{"checkpoint_id":"final"}"#);
        assert!(texts.iter().any(|t| t.contains(r#""word":"cli""#)));
    });
    drop(child.stdin.take());
    let deadline = Instant::now() + T;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("server binary did not exit after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
