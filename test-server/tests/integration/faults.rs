// SPDX-License-Identifier: MPL-2.0
//! Each fault's visible behaviour.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use fireworks_test_server::audio::{synthesize, Script};
use fireworks_test_server::{
    synthesize_utterances, ConnectionEnd, Fault, ServerConfig, TestServer, STREAMING_PATH,
};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

const SHORT: Duration = Duration::from_millis(300);

async fn trace_roundtrip(ws: &mut Ws, id: &str) {
    send_text(
        ws,
        &json!({"event_id": "e", "object": "stt.input.trace", "trace_id": id}).to_string(),
    )
    .await;
    loop {
        let v = recv_json(ws).await;
        if v["object"] == "stt.output.trace" {
            assert_eq!(v["trace_id"], id);
            return;
        }
    }
}

#[tokio::test]
async fn rejected_upgrades_then_a_reconnect_succeeds() {
    let statuses = [401u16, 403, 429, 500, 503];
    let mut config = ServerConfig::default();
    for (i, st) in statuses.iter().enumerate() {
        config = config.with_fault(
            i,
            Fault::RejectUpgrade {
                status: *st,
                body: format!("nope {st}"),
            },
        );
    }
    let s = TestServer::start(config).unwrap();
    for st in statuses {
        let err = connect(&s, "", None).await.expect_err("refused");
        assert_eq!(http_status(&err), Some((st, format!("nope {st}"))));
    }
    let mut ws = connect(&s, "", None).await.expect("connection 5 succeeds");
    trace_roundtrip(&mut ws, "ok").await;
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(5, T));
    let r = s.connections();
    for (i, st) in statuses.iter().enumerate() {
        assert_eq!(r[i].upgrade_status, Some(*st));
        assert_eq!(
            r[i].end,
            Some(ConnectionEnd::Rejected {
                status: *st,
                body: format!("nope {st}")
            })
        );
        // The request was still recorded.
        assert_eq!(r[i].path, STREAMING_PATH);
    }
    assert!(r[5].upgraded_ok());
}

#[tokio::test]
async fn no_upgrade_response_leaves_the_client_hanging() {
    let s =
        TestServer::start(ServerConfig::default().with_fault(0, Fault::NoUpgradeResponse)).unwrap();
    let req = format!("ws://{}{}", s.addr(), STREAMING_PATH)
        .into_client_request()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let r = tokio::time::timeout(SHORT, tokio_tungstenite::client_async(req, tcp)).await;
    assert!(r.is_err(), "the handshake must not complete");
    // Other connections are served meanwhile.
    let mut ws = open(&s, "").await;
    trace_roundtrip(&mut ws, "alive").await;
    client_close(&mut ws).await;
    let c = s.connection(0).unwrap();
    assert_eq!(c.upgrade_status, None);
    assert!(c.end.is_none());
    assert_eq!(c.faults_fired, vec!["NoUpgradeResponse"]);
}

#[tokio::test]
async fn drop_after_bytes_resets_without_close_frame() {
    let s = TestServer::start(
        ServerConfig::default().with_fault(0, Fault::DropAfterBytes { bytes: 3200 }),
    )
    .unwrap();
    let mut ws = open(&s, "").await;
    for _ in 0..4 {
        let _ = ws.send(Message::binary(vec![0u8; 1600])).await;
    }
    match recv(&mut ws, T).await {
        Recv::Error(_) | Recv::End => {}
        other => panic!("expected an abrupt end, got {other:?}"),
    }
    assert!(s.wait_until_closed(0, T));
    let c = s.connection(0).unwrap();
    assert_eq!(c.end, Some(ConnectionEnd::ServerDropped));
    assert_eq!(c.audio_bytes, 3200);
}

#[tokio::test]
async fn close_after_bytes_sends_the_close_frame() {
    let s = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::CloseAfterBytes {
            bytes: 3200,
            code: 1011,
            reason: "internal error".into(),
        },
    ))
    .unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &[0u8; 3200], 1600).await;
    assert_eq!(
        recv(&mut ws, T).await,
        Recv::Close(Some((1011, "internal error".into())))
    );
    assert_eq!(recv(&mut ws, T).await, Recv::End);
    assert!(s.wait_until_closed(0, T));
    let c = s.connection(0).unwrap();
    assert_eq!(
        c.end,
        Some(ConnectionEnd::ServerClosed {
            code: 1011,
            reason: "internal error".into()
        })
    );
    assert_eq!(c.audio_bytes, 3200);
}

#[tokio::test]
async fn close_reasons_are_cut_to_fit_a_close_frame() {
    let long = "x".repeat(300);
    let s = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::CloseAfterBytes {
            bytes: 0,
            code: 1001,
            reason: long,
        },
    ))
    .unwrap();
    let mut ws = open(&s, "").await;
    assert_eq!(
        recv(&mut ws, T).await,
        Recv::Close(Some((1001, "x".repeat(123))))
    );
}

#[tokio::test]
async fn error_then_close() {
    let s = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::ErrorAfterBytes {
            bytes: 0,
            message: "invalid model".into(),
            close_code: Some(1008),
        },
    ))
    .unwrap();
    let mut ws = open(&s, "").await;
    assert_eq!(recv_json(&mut ws).await, json!({"error": "invalid model"}));
    assert_eq!(
        recv(&mut ws, T).await,
        Recv::Close(Some((1008, "invalid model".into())))
    );
    // Polling once more sends our close reply, which completes the server's close handshake.
    assert_eq!(recv(&mut ws, T).await, Recv::End);
    assert!(s.wait_until_closed(0, T));
    assert_eq!(
        s.connection(0).unwrap().end,
        Some(ConnectionEnd::ServerClosed {
            code: 1008,
            reason: "invalid model".into()
        })
    );
}

#[tokio::test]
async fn error_without_close_then_the_session_goes_on() {
    let s = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::ErrorAfterBytes {
            bytes: 1600,
            message: "transient".into(),
            close_code: None,
        },
    ))
    .unwrap();
    let audio = synthesize_utterances(&["go on"]).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    let mut saw_error = false;
    let mut last = Value::Null;
    while !is_final(&last) {
        last = recv_json(&mut ws).await;
        if last.get("error").is_some() {
            assert_eq!(last, json!({"error": "transient"}));
            saw_error = true;
        }
    }
    assert!(saw_error);
    assert_eq!(last["text"], "go on");
    client_close(&mut ws).await;
}

#[tokio::test]
async fn malformed_json_binary_and_oversized_frames_then_normal_service() {
    let size = 20 * 1024 * 1024;
    let s = TestServer::start(
        ServerConfig::default()
            .with_fault(0, Fault::MalformedJsonAfterBytes { bytes: 0 })
            .with_fault(0, Fault::BinaryFrameAfterBytes { bytes: 1 })
            .with_fault(0, Fault::OversizedTextAfterBytes { bytes: 2, size }),
    )
    .unwrap();
    // One 20 MiB frame: above tungstenite's default 16 MiB frame limit, so lift the limits.
    let cfg = WebSocketConfig::default()
        .max_frame_size(None)
        .max_message_size(None);
    let mut ws = connect_with(&s, STREAMING_PATH, None, Some(cfg))
        .await
        .unwrap();
    match recv(&mut ws, T).await {
        Recv::Text(t) => assert!(serde_json::from_str::<Value>(&t).is_err(), "{t}"),
        other => panic!("{other:?}"),
    }
    send_audio(&mut ws, &[0u8; 1], 1).await;
    assert_eq!(
        recv(&mut ws, T).await,
        Recv::Binary(vec![0xde, 0xad, 0xbe, 0xef])
    );
    send_audio(&mut ws, &[0u8; 1], 1).await;
    match recv(&mut ws, T).await {
        Recv::Text(t) => {
            assert_eq!(t.len(), size);
            assert!(t.starts_with(r#"{"padding":"xxx"#));
        }
        other => panic!("{other:?}"),
    }
    trace_roundtrip(&mut ws, "still here").await;
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let c = s.connection(0).unwrap();
    assert_eq!(c.faults_fired.len(), 3);
    assert_eq!(c.sent_binary_count, 1);
}

#[tokio::test]
async fn a_client_with_a_small_message_limit_fails_on_the_oversized_message() {
    let s = TestServer::start(ServerConfig::default().with_fault(
        0,
        Fault::OversizedTextAfterBytes {
            bytes: 0,
            size: 2_000_000,
        },
    ))
    .unwrap();
    let cfg = WebSocketConfig::default().max_message_size(Some(1 << 20));
    let mut ws = connect_with(&s, STREAMING_PATH, None, Some(cfg))
        .await
        .unwrap();
    match recv(&mut ws, T).await {
        Recv::Error(e) => assert!(e.contains("too long"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stall_stops_reading_without_blocking_other_connections() {
    let s = TestServer::start(
        ServerConfig::default().with_fault(0, Fault::StallAfterBytes { bytes: 3200 }),
    )
    .unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &[0u8; 3200], 1600).await;
    assert!(s.wait_for(T, |r| r.first().is_some_and(|c| c.stalled)));
    send_text(&mut ws, r#"{"checkpoint_id":"final"}"#).await;
    assert_eq!(recv(&mut ws, SHORT).await, Recv::Timeout);
    // Another connection is served normally meanwhile.
    let mut other = open(&s, "").await;
    trace_roundtrip(&mut other, "fine").await;
    client_close(&mut other).await;
    // Writes to the stalled connection eventually block.
    let mut blocked = false;
    for _ in 0..64 {
        let frame = Message::binary(vec![0u8; 1 << 20]);
        if tokio::time::timeout(SHORT, ws.send(frame)).await.is_err() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "64 MiB went into a stalled connection");
    let c = s.connection(0).unwrap();
    assert_eq!(c.audio_bytes, 3200);
    assert!(c.end.is_none());
    assert!(c.checkpoints.is_empty());
    // Dropping the server ends the stall promptly.
    let start = Instant::now();
    drop(s);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn never_echo_checkpoint_still_finalizes() {
    let s = TestServer::start(ServerConfig::default().with_fault(0, Fault::NeverEchoCheckpoint))
        .unwrap();
    let audio = synthesize(&Script::new().utterance_then("no echo", Duration::ZERO)).unwrap();
    let mut ws = open(&s, "").await;
    send_audio(&mut ws, &audio.to_le_bytes(), 1600).await;
    send_text(&mut ws, r#"{"checkpoint_id":"final"}"#).await;
    let mut last = Value::Null;
    while !is_final(&last) {
        last = recv_json(&mut ws).await;
        assert!(last.get("checkpoint_id").is_none());
    }
    assert_eq!(recv(&mut ws, SHORT).await, Recv::Timeout);
    client_close(&mut ws).await;
    assert!(s.wait_until_closed(0, T));
    let c = s.connection(0).unwrap();
    assert_eq!(c.checkpoint_ids(), vec!["final"]);
    assert!(!c.checkpoints[0].echoed);
}

#[tokio::test]
async fn faults_apply_only_to_their_connection_and_in_order() {
    let s = TestServer::start(
        ServerConfig::default()
            .with_fault(
                1,
                Fault::ErrorAfterBytes {
                    bytes: 1600,
                    message: "first".into(),
                    close_code: None,
                },
            )
            .with_fault(
                1,
                Fault::CloseAfterBytes {
                    bytes: 3200,
                    code: 1001,
                    reason: "going away".into(),
                },
            ),
    )
    .unwrap();
    for index in 0..3 {
        let mut ws = open(&s, "").await;
        send_audio(&mut ws, &[0u8; 4800], 1600).await;
        if index == 1 {
            assert_eq!(recv_json(&mut ws).await, json!({"error": "first"}));
            assert_eq!(
                recv(&mut ws, T).await,
                Recv::Close(Some((1001, "going away".into())))
            );
        } else {
            trace_roundtrip(&mut ws, "normal").await;
            client_close(&mut ws).await;
        }
    }
    assert!(s.wait_until_closed(2, T));
    let r = s.connections();
    assert!(r[0].faults_fired.is_empty() && r[2].faults_fired.is_empty());
    assert_eq!(r[1].faults_fired.len(), 2);
    assert_eq!(r[1].audio_bytes, 3200);
}
