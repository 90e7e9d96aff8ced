//! The heads of ready queues, read without walking the queue.
//!
//! etcd answers a limited range only after collecting every key in it (3.4
//! gathers the whole range's revisions before cutting to the limit; later
//! versions still count them), so the first 32 keys of a queue of a million
//! cost the million. A node therefore remembers, per queue, a *window*: the span
//! from the queue's start to just past the `WINDOW`-th key it last saw, and
//! reads the head within it. The window only ever holds the queue's smallest
//! keys plus whatever sorted in before them since (a higher priority, a task
//! put back), so when the window holds any key, its first key is the queue's
//! first: strict priority holds. When it holds none (its tasks were taken) or
//! grew deep, the node reads the queue's first `WINDOW` keys again, once per
//! that many claims. The embedded store stops at the limit anyway; the window
//! costs it nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use ifc_kv::{
    KeyRange, KeyValue, RangeRequest, RangeResponse, TxnOp, TxnOpResponse, TxnRequest, prefix_end,
};

use crate::{Coordinator, CoreError};

/// How many ready keys of each matching queue claim_next's window read
/// returns (a batch of claims asks for more, up to [`WINDOW`]).
pub(crate) const QUEUE_HEAD: i64 = 32;

/// How many keys a window spans when it is (re)read.
const WINDOW: i64 = 1024;

/// The first keys of one queue as read, and whether the queue may hold keys
/// after them.
#[derive(Debug, Default)]
pub(crate) struct QueueHead {
    pub kvs: Vec<KeyValue>,
    /// The read stopped at its limit or at a window's end short of the
    /// queue's: keys past the last of `kvs` may exist.
    pub cut: bool,
}

/// Each queue's window end (exclusive), as this node last read it.
#[derive(Default)]
pub(crate) struct QueueWindows {
    ends: Mutex<HashMap<String, Vec<u8>>>,
}

impl QueueWindows {
    fn get(&self, queue: &str) -> Option<Vec<u8>> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner()).get(queue).cloned()
    }

    fn set(&self, queue: &str, end: Option<Vec<u8>>) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        match end {
            Some(end) => ends.insert(queue.to_string(), end),
            None => ends.remove(queue),
        };
    }
}

impl Coordinator {
    /// The first keys of each of `queues`, in order: at most `head` (itself at
    /// most [`WINDOW`]) from a window, up to `WINDOW` when the window was read
    /// again. `refill_all` reads every window again (the caller found nothing
    /// it could take in what the windows held). Also says whether every queue
    /// was read afresh (then an empty answer is the queues' own, not a
    /// window's).
    pub(crate) async fn queue_heads(
        &self,
        queues: &[String],
        head: i64,
        refill_all: bool,
    ) -> Result<(Vec<QueueHead>, bool), CoreError> {
        let head = head.clamp(1, WINDOW);
        let windows: Vec<Option<Vec<u8>>> = queues
            .iter()
            .map(|q| if refill_all { None } else { self.queue_windows.get(q) })
            .collect();
        let mut txn = TxnRequest::new();
        for (queue, window) in queues.iter().zip(&windows) {
            txn = txn.and_then(TxnOp::Range(match window {
                Some(end) => self.window_read(queue, end.clone(), head),
                None => self.refill_read(queue),
            }));
        }
        let fresh = windows.iter().all(Option::is_none);
        let answers = range_answers(self.store.txn(txn).await?.responses);
        let mut heads = Vec::with_capacity(queues.len());
        let mut refill = Vec::new();
        for (i, (answer, window)) in answers.into_iter().zip(windows).enumerate() {
            let queue = &queues[i];
            let head = match window {
                None => self.refilled(queue, answer),
                Some(_) if answer.kvs.is_empty() || too_deep(&answer) => {
                    refill.push(i);
                    QueueHead::default()
                }
                Some(end) => {
                    let queue_end = prefix_end(self.keys.ready_queue(queue).as_bytes());
                    QueueHead { cut: answer.more || end != queue_end, kvs: answer.kvs }
                }
            };
            heads.push(head);
        }
        let fresh = fresh || refill.len() == queues.len();
        if !refill.is_empty() {
            let mut txn = TxnRequest::new();
            for &i in &refill {
                txn = txn.and_then(TxnOp::Range(self.refill_read(&queues[i])));
            }
            let answers = range_answers(self.store.txn(txn).await?.responses);
            for (i, answer) in refill.into_iter().zip(answers) {
                heads[i] = self.refilled(&queues[i], answer);
            }
        }
        Ok((heads, fresh))
    }

    /// The head within a known window.
    fn window_read(&self, queue: &str, end: Vec<u8>, head: i64) -> RangeRequest {
        let start = self.keys.ready_queue(queue).into_bytes();
        RangeRequest::new(KeyRange::Span { start, end }).with_limit(head)
    }

    /// The queue's first `WINDOW` keys, to set its window from.
    fn refill_read(&self, queue: &str) -> RangeRequest {
        RangeRequest::prefix(self.keys.ready_queue(queue)).with_limit(WINDOW)
    }

    /// Sets `queue`'s window from a refill read; its keys, all of them, so a
    /// caller that cannot take the first few (backing off) sees further.
    fn refilled(&self, queue: &str, answer: RangeResponse) -> QueueHead {
        let end = match answer.kvs.last() {
            // Just past the last key read: the window holds exactly these keys.
            Some(last) if answer.more => {
                let mut end = last.key.clone();
                end.push(0);
                Some(end)
            }
            // The whole queue fit: the window is the queue, until it grows deep.
            Some(_) => Some(prefix_end(self.keys.ready_queue(queue).as_bytes())),
            None => None,
        };
        self.queue_windows.set(queue, end);
        QueueHead { cut: answer.more, kvs: answer.kvs }
    }
}

/// A window that now holds more than a refill would: read it again, so that
/// reads stay bounded (a count past the limit is at least what it says).
fn too_deep(answer: &RangeResponse) -> bool {
    answer.more && answer.count > WINDOW
}

fn range_answers(responses: Vec<TxnOpResponse>) -> Vec<RangeResponse> {
    responses
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Range(r) => Some(r),
            _ => None,
        })
        .collect()
}
