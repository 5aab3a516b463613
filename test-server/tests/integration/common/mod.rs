// SPDX-License-Identifier: MPL-2.0
//! A small raw WebSocket client for testing the server.
#![allow(dead_code)]

use std::time::Duration;

use fireworks_test_server::{TestServer, STREAMING_PATH};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

pub const T: Duration = Duration::from_secs(5);

/// Connects to `path_and_query` (e.g. "/v1/audio/transcriptions/streaming?x=1").
pub async fn connect_with(
    server: &TestServer,
    path_and_query: &str,
    auth: Option<&str>,
    config: Option<WebSocketConfig>,
) -> Result<Ws, tungstenite::Error> {
    let url = format!("ws://{}{}", server.addr(), path_and_query);
    let mut req = url.into_client_request()?;
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", a.parse().expect("header value"));
    }
    req.headers_mut()
        .insert("user-agent", "raw-test-client".parse().unwrap());
    let stream = TcpStream::connect(server.addr()).await?;
    let fut = tokio_tungstenite::client_async_with_config(req, stream, config);
    let (ws, _resp) = tokio::time::timeout(T, fut)
        .await
        .expect("handshake timed out")?;
    Ok(ws)
}

pub async fn connect(
    server: &TestServer,
    query: &str,
    auth: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let pq = if query.is_empty() {
        STREAMING_PATH.to_string()
    } else {
        format!("{STREAMING_PATH}?{query}")
    };
    connect_with(server, &pq, auth, None).await
}

/// Connects to the streaming path with `query`, panicking on failure.
pub async fn open(server: &TestServer, query: &str) -> Ws {
    connect(server, query, None).await.expect("connect")
}

/// The HTTP status and body of a refused upgrade.
pub fn http_status(err: &tungstenite::Error) -> Option<(u16, String)> {
    match err {
        tungstenite::Error::Http(resp) => Some((
            resp.status().as_u16(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        )),
        _ => None,
    }
}

pub async fn send_audio(ws: &mut Ws, bytes: &[u8], chunk: usize) {
    for c in bytes.chunks(chunk) {
        ws.send(Message::binary(c.to_vec()))
            .await
            .expect("send audio");
    }
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send text");
}

#[derive(Debug, Clone, PartialEq)]
pub enum Recv {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
    End,
    Error(String),
    Timeout,
}

pub async fn recv(ws: &mut Ws, timeout: Duration) -> Recv {
    loop {
        let next = match tokio::time::timeout(timeout, ws.next()).await {
            Err(_) => return Recv::Timeout,
            Ok(n) => n,
        };
        return match next {
            None => Recv::End,
            Some(Err(e)) => Recv::Error(e.to_string()),
            Some(Ok(Message::Text(t))) => Recv::Text(t.as_str().to_string()),
            Some(Ok(Message::Binary(b))) => Recv::Binary(b.to_vec()),
            Some(Ok(Message::Close(f))) => {
                Recv::Close(f.map(|f| (u16::from(f.code), f.reason.as_str().to_string())))
            }
            Some(Ok(_)) => continue,
        };
    }
}

/// The next text message as JSON (panics otherwise).
pub async fn recv_json(ws: &mut Ws) -> Value {
    match recv(ws, T).await {
        Recv::Text(t) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Whether a transcript message is final by the base rule of docs/protocol.md#base-rules (last word of the highest-id
/// segment has is_final true).
pub fn is_final(msg: &Value) -> bool {
    let Some(segs) = msg["segments"].as_array() else {
        return false;
    };
    segs.iter()
        .max_by_key(|s| s["id"].as_u64().unwrap_or(0))
        .and_then(|s| s["words"].as_array())
        .and_then(|w| w.last())
        .is_some_and(|w| w["is_final"] == Value::Bool(true))
}

/// Receives text messages until `n` final transcripts arrived; returns all messages.
pub async fn collect_finals(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut finals = 0;
    while finals < n {
        let v = recv_json(ws).await;
        if is_final(&v) {
            finals += 1;
        }
        all.push(v);
    }
    all
}

/// Compact form of a transcript: "0:hello* world | 1:how" (* = final word).
pub fn compact(msg: &Value) -> String {
    msg["segments"]
        .as_array()
        .map(|segs| {
            segs.iter()
                .map(|s| {
                    let words: Vec<String> = s["words"]
                        .as_array()
                        .map(|w| {
                            w.iter()
                                .map(|w| {
                                    let t = w["word"].as_str().unwrap_or("?").to_string();
                                    if w["is_final"] == Value::Bool(true) {
                                        t + "*"
                                    } else {
                                        t
                                    }
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("{}:{}", s["id"], words.join(" "))
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// Closes from the client side and waits for the server's answer.
pub async fn client_close(ws: &mut Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(T, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
