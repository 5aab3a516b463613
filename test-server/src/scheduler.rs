// SPDX-License-Identifier: MPL-2.0
//! One decode queue for the whole process, shared by every connection: the machine's cores
//! decode for all live streams at once, and the queue decides what runs first.
//!
//! * **Workers:** [`workers`] threads (one per core, at most 4), each running one decode at a
//!   time on its own CTranslate2 replica of the one shared model (see
//!   [`crate::recognizer::Recognizer::load`]).
//! * **Finals before interims:** a worker takes the oldest final (speculative finals are finals)
//!   before any interim, so under load the words that must become final are never held up by
//!   the preview of another stream.
//! * **Interims give way to a waiting final:** a final that finds every worker busy is
//!   waiting only for a worker; an interim checks between its decode steps (after the
//!   encoder, after the text search) and stops when a final waits, so the final starts after
//!   at most one step of an interim instead of its whole decode (the interim's connection asks
//!   again with newer audio). Measured with 4 live streams on 2 cores (BENCHMARKS.md, 7).
//! * **Stale interims are skipped:** an interim that waited more than [`STALE_INTERIM`] is not
//!   decoded (its connection gets no answer and asks for a fresh one with the audio it has by
//!   then), nor is any job whose connection stopped waiting for it (a discarded speculation, a
//!   closed connection). Under load interims come less often; they never fall behind.
//! * **Spare time only for retries:** each result says whether other decodes were running or
//!   waiting when it finished ([`DecodeDone::backlog`]); an empty first interim is asked again
//!   early only when none were (see [`crate::speech::Segmenter::first_interim_was_empty`]).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::{DecodeDone, DecodeJob, DecodeKind};

/// An interim older than this when a worker is free is dropped rather than decoded.
pub const STALE_INTERIM: Duration = Duration::from_millis(1000);
/// Environment variable setting the number of decode workers.
pub const WORKERS_ENV: &str = "FIREWORKSSTT_DECODE_WORKERS";

/// The answer to a submitted job; an error means it was skipped (stale or abandoned).
pub type Pending = oneshot::Receiver<DecodeDone>;

/// Environment variable: `0` keeps interims from giving way to waiting finals (see
/// [`Scheduler`]), for comparisons.
pub const PREEMPT_ENV: &str = "FIREWORKSSTT_PREEMPT_INTERIMS";

fn preempt_interims() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| crate::config::switched_on(PREEMPT_ENV))
}

/// Decode workers: `FIREWORKSSTT_DECODE_WORKERS`, else one per core, at most 4.
pub fn workers() -> usize {
    std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(1)
        })
}

struct Queued {
    job: DecodeJob,
    reply: oneshot::Sender<DecodeDone>,
    since: Instant,
}

#[derive(Default)]
struct Queues {
    finals: VecDeque<Queued>,
    interims: VecDeque<Queued>,
    /// Workers decoding right now.
    busy: usize,
}

/// The process-wide decode queue.
pub struct Scheduler {
    queues: Mutex<Queues>,
    ready: Condvar,
}

impl Scheduler {
    /// The shared queue; its workers start on first use.
    pub fn shared() -> &'static Scheduler {
        static SHARED: OnceLock<&'static Scheduler> = OnceLock::new();
        SHARED.get_or_init(|| {
            let s: &'static Scheduler = Box::leak(Box::new(Scheduler {
                queues: Mutex::new(Queues::default()),
                ready: Condvar::new(),
            }));
            for i in 0..workers() {
                let _ = std::thread::Builder::new()
                    .name(format!("decode-{i}"))
                    .spawn(move || s.work());
                // A worker that cannot be started leaves the others; with none, submit()
                // callers see their job skipped rather than hanging (see `submit`).
            }
            s
        })
    }

    /// Queues `job`; the receiver gets its result, or an error if it was skipped.
    pub fn submit(&self, job: DecodeJob) -> Pending {
        let (reply, pending) = oneshot::channel();
        let queued = Queued {
            job,
            reply,
            since: Instant::now(),
        };
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        match queued.job.kind {
            DecodeKind::Final => {
                // The final replaces whatever interim of this stream is still queued.
                let stream = queued.job.stream;
                q.interims.retain(|j| j.job.stream != stream);
                q.finals.push_back(queued);
            }
            DecodeKind::Interim => q.interims.push_back(queued),
        }
        drop(q);
        self.ready.notify_one();
        pending
    }

    /// The next job worth decoding: the oldest final still awaited, else the oldest fresh
    /// interim still awaited (the rest are dropped, which tells their connections).
    fn next(q: &mut Queues) -> Option<Queued> {
        while let Some(j) = q.finals.pop_front() {
            if !j.reply.is_closed() {
                return Some(j);
            }
        }
        while let Some(j) = q.interims.pop_front() {
            if !j.reply.is_closed() && j.since.elapsed() <= STALE_INTERIM {
                return Some(j);
            }
        }
        None
    }

    fn work(&self) {
        loop {
            let job = {
                let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if let Some(j) = Self::next(&mut q) {
                        q.busy += 1;
                        break j;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            // An interim gives way, between its decode steps, to a final that is waiting for
            // a worker (every worker is busy then, or it would not be waiting); the interim's
            // connection sees it skipped and asks again with newer audio.
            let preempt = job.job.kind == DecodeKind::Interim && preempt_interims();
            let finals_waiting = || {
                preempt
                    && self
                        .queues
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .finals
                        .iter()
                        .any(|j| !j.reply.is_closed())
            };
            let done = job.job.run_unless(&finals_waiting);
            let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            q.busy -= 1;
            let backlog = q.busy > 0 || !q.finals.is_empty() || !q.interims.is_empty();
            drop(q);
            if let Some(mut done) = done {
                done.backlog = backlog;
                let _ = job.reply.send(done);
            }
        }
    }
}
