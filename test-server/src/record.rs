// SPDX-License-Identifier: MPL-2.0
//! What the server saw and did, per connection, for tests to assert on.

use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engine::FinalUtterance;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEnd {
    /// The upgrade was refused with this HTTP status (404 path, 400 query, 401 auth, or a fault).
    Rejected { status: u16, body: String },
    /// The upgrade failed: not a WebSocket request, timeout, or the client went away.
    HandshakeFailed { reason: String },
    /// The client sent a close frame (`code` is `None` for an empty close frame).
    ClientClosed { code: Option<u16>, reason: String },
    /// The server sent a close frame (close after echo, a close or error fault).
    ServerClosed { code: u16, reason: String },
    /// The TCP connection ended without a close frame from the client, or a protocol error.
    ClientDropped { error: Option<String> },
    /// The server dropped the TCP connection on purpose (fault).
    ServerDropped,
    /// The server shut down while the connection was open (also ends stalled connections and
    /// connections that never got an upgrade answer).
    Shutdown,
}

/// A checkpoint the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// The id as a string (a JSON string's content, otherwise the JSON text of the value).
    pub id: String,
    /// Audio bytes received before it.
    pub audio_bytes_before: u64,
    pub at: Instant,
    /// Whether it was echoed.
    pub echoed: bool,
}

/// Everything recorded about one TCP connection.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// Connection index (accept order, from 0), as used by faults.
    pub index: usize,
    pub peer: Option<SocketAddr>,
    /// Request path (without query); empty if no request was read.
    pub path: String,
    /// The raw query string as sent (still percent-encoded), if any.
    pub raw_query: Option<String>,
    /// Decoded query pairs in order, repeated keys kept.
    pub query: Vec<(String, String)>,
    /// All request headers in order (names lowercase).
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header value, if sent.
    pub authorization_header: Option<String>,
    /// The `Authorization` query parameter value, if sent.
    pub authorization_query: Option<String>,
    /// HTTP status of the upgrade answer (101 on success); `None` if never answered.
    pub upgrade_status: Option<u16>,
    /// Query keys the server does not know.
    pub unknown_query_keys: Vec<String>,
    /// Bytes of audio (binary frames) received.
    pub audio_bytes: u64,
    /// Binary frames received.
    pub audio_frames: u64,
    /// The audio bytes themselves (if `record_audio`).
    pub audio: Vec<u8>,
    /// Text frames received, raw.
    pub text_frames: Vec<String>,
    /// Checkpoints received, in order.
    pub checkpoints: Vec<CheckpointRecord>,
    /// Trace ids received (`stt.input.trace`).
    pub trace_ids: Vec<String>,
    /// Reset ids received (`stt.state.clear`).
    pub clear_ids: Vec<String>,
    /// Text messages sent, in order (if `record_messages`).
    pub sent_messages: Vec<String>,
    /// Text messages sent (always counted).
    pub sent_text_count: u64,
    /// Transcript messages among them.
    pub sent_transcript_count: u64,
    /// Binary frames sent (fault).
    pub sent_binary_count: u64,
    /// Utterances the server finalized, with exact sample spans.
    pub finals: Vec<FinalUtterance>,
    /// Faults that fired, as debug text.
    pub faults_fired: Vec<String>,
    /// The connection stalled on purpose.
    pub stalled: bool,
    pub started: Instant,
    pub upgraded: Option<Instant>,
    pub first_audio_at: Option<Instant>,
    pub last_audio_at: Option<Instant>,
    pub ended: Option<Instant>,
    pub end: Option<ConnectionEnd>,
}

impl ConnectionRecord {
    pub(crate) fn new(index: usize, peer: Option<SocketAddr>) -> Self {
        ConnectionRecord {
            index,
            peer,
            path: String::new(),
            raw_query: None,
            query: Vec::new(),
            headers: Vec::new(),
            authorization_header: None,
            authorization_query: None,
            upgrade_status: None,
            unknown_query_keys: Vec::new(),
            audio_bytes: 0,
            audio_frames: 0,
            audio: Vec::new(),
            text_frames: Vec::new(),
            checkpoints: Vec::new(),
            trace_ids: Vec::new(),
            clear_ids: Vec::new(),
            sent_messages: Vec::new(),
            sent_text_count: 0,
            sent_transcript_count: 0,
            sent_binary_count: 0,
            finals: Vec::new(),
            faults_fired: Vec::new(),
            stalled: false,
            started: Instant::now(),
            upgraded: None,
            first_audio_at: None,
            last_audio_at: None,
            ended: None,
            end: None,
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.end.is_some()
    }

    /// Whether the WebSocket upgrade succeeded.
    pub fn upgraded_ok(&self) -> bool {
        self.upgrade_status == Some(101)
    }

    /// All values of a query key, in order.
    pub fn query_values(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of a query key.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A request header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The ids of the checkpoints received.
    pub fn checkpoint_ids(&self) -> Vec<&str> {
        self.checkpoints.iter().map(|c| c.id.as_str()).collect()
    }

    /// The texts of the finalized utterances.
    pub fn final_texts(&self) -> Vec<&str> {
        self.finals.iter().map(|f| f.text.as_str()).collect()
    }

    /// The sent messages parsed as JSON (those that parse).
    pub fn sent_json(&self) -> Vec<serde_json::Value> {
        self.sent_messages
            .iter()
            .filter_map(|m| serde_json::from_str(m).ok())
            .collect()
    }
}

/// The shared store of records with a condition variable for bounded waits.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    records: Mutex<Vec<ConnectionRecord>>,
    changed: Condvar,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Vec<ConnectionRecord>> {
        // A panic while holding the lock cannot leave a record half-written in a way that matters;
        // keep serving.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record for a new connection; returns its index.
    pub(crate) fn add(&self, peer: Option<SocketAddr>) -> usize {
        let mut r = self.lock();
        let index = r.len();
        r.push(ConnectionRecord::new(index, peer));
        drop(r);
        self.changed.notify_all();
        index
    }

    pub(crate) fn update<T>(
        &self,
        index: usize,
        f: impl FnOnce(&mut ConnectionRecord) -> T,
    ) -> Option<T> {
        let mut r = self.lock();
        let out = r.get_mut(index).map(f);
        drop(r);
        self.changed.notify_all();
        out
    }

    /// Records the end of a connection (only the first end counts).
    pub(crate) fn finish(&self, index: usize, end: ConnectionEnd) {
        self.update(index, |r| {
            if r.end.is_none() {
                r.end = Some(end);
                r.ended = Some(Instant::now());
            }
        });
    }

    pub(crate) fn snapshot(&self) -> Vec<ConnectionRecord> {
        self.lock().clone()
    }

    pub(crate) fn get(&self, index: usize) -> Option<ConnectionRecord> {
        self.lock().get(index).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Waits until `cond` holds on the records, at most `timeout`. Returns whether it holds.
    pub(crate) fn wait_for(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&[ConnectionRecord]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut r = self.lock();
        loop {
            if cond(&r) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            r = match self.changed.wait_timeout(r, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}
