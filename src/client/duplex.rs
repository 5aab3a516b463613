// SPDX-License-Identifier: MPL-2.0
//! Writing to the service without ever stopping reading from it.
//!
//! A service that awaits its own sends stops reading our audio while its messages to us wait
//! in the socket. If we in turn stopped reading while our audio waits, both socket buffers
//! would fill and neither side could move again (docs/protocol.md, "Flow control", F1). So every
//! write here also polls the read side: a frame that arrives while the write cannot progress
//! is handed back to the caller, which processes it and then resumes the same write.
//!
//! One owner polls both directions of the one stream in turn, inside a single `poll`: no split
//! halves and no lock between them.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// What a turn of [`PendingWrite::advance`] came back with.
#[derive(Debug)]
pub enum WriteProgress {
    /// Every message was written and flushed (or the write failed).
    Written(Result<(), WsError>),
    /// A frame arrived (or the read side ended) before the write completed; the write is
    /// still pending and resumes at the next `advance`.
    Incoming(Option<Result<Message, WsError>>),
}

/// Messages on their way out: fed one by one as the socket accepts them, then flushed.
pub struct PendingWrite {
    queue: VecDeque<Message>,
}

impl PendingWrite {
    pub fn new(messages: VecDeque<Message>) -> Self {
        PendingWrite { queue: messages }
    }

    /// Moves the write on until it completes or a frame arrives. Cancel-safe: dropping the
    /// returned future loses nothing (unsent messages stay queued here, a message already
    /// handed to the stream stays in its write buffer).
    pub async fn advance<S>(&mut self, stream: &mut S) -> WriteProgress
    where
        S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
    {
        poll_fn(|cx| self.poll_advance(stream, cx)).await
    }

    fn poll_advance<S>(&mut self, stream: &mut S, cx: &mut Context<'_>) -> Poll<WriteProgress>
    where
        S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
    {
        if let Poll::Ready(result) = self.poll_write(stream, cx) {
            return Poll::Ready(WriteProgress::Written(result));
        }
        // The write waits for the socket: meanwhile, whatever the service sends is taken in.
        Pin::new(stream).poll_next(cx).map(WriteProgress::Incoming)
    }

    fn poll_write<S>(&mut self, stream: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), WsError>>
    where
        S: Sink<Message, Error = WsError> + Unpin,
    {
        while let Some(message) = self.queue.pop_front() {
            match Pin::new(&mut *stream).poll_ready(cx) {
                Poll::Ready(Ok(())) => Pin::new(&mut *stream).start_send(message)?,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    self.queue.push_front(message);
                    return Poll::Pending;
                }
            }
        }
        Pin::new(stream).poll_flush(cx)
    }
}
