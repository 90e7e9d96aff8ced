//! Sending one request to the cluster: try the members in order, fail over
//! when one does not answer, and never retry a write whose first attempt may
//! have been applied unless a retry cannot apply it twice.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::Client;
use ifc_kv::{CompareOp, CompareTarget, KvError, TxnOp, TxnRequest};
use tonic::Code;

use crate::members::Members;

/// How long an attempt in flight when a new leader is reported may still
/// answer before it is abandoned (see [`Members::call`]).
const LEADER_CHANGE_GRACE: Duration = Duration::from_millis(250);

/// What a failed attempt says about the request.
pub(crate) enum Failure {
    /// etcd answered with a definite error: the request's answer.
    Final(KvError),
    /// The member answered that it has no leader (an election, or it is cut
    /// off): nothing was applied; another member may have one.
    NoLeader(String),
    /// The request never reached etcd's raft log (no connection, or refused
    /// before proposing): nothing was applied.
    NotApplied(String),
    /// Sent, then the answer was lost: it may have been applied.
    Unknown(String),
    /// The member answered that its leader changed while the request waited:
    /// it may have been applied, and the member itself is fine.
    Interrupted(String),
}

/// Whether a request may be sent again after an attempt whose outcome is
/// unknown.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Resend {
    /// Reads, keep-alives, grants (an unused lease expires), revokes: doing
    /// it twice changes nothing more than once.
    Always,
    /// A txn whose compares its own success branch falsifies: a second
    /// attempt after a first that applied fails its compares and writes
    /// nothing. Only a failed compare after an unknown attempt is ambiguous.
    Guarded,
    /// Anything else that writes: an unknown attempt is the answer.
    Never,
}

/// An answer, and whether an earlier attempt's outcome was unknown.
pub(crate) struct Answer<T> {
    pub(crate) value: T,
    pub(crate) after_unknown: bool,
}

/// Classifies an etcd-client error.
pub(crate) fn classify(e: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => classify_status(&status),
        E::TransportError(e) => Failure::NotApplied(e.to_string()),
        E::IoError(e) => Failure::Unknown(e.to_string()),
        other => Failure::Final(crate::map_error(other)),
    }
}

fn classify_status(status: &tonic::Status) -> Failure {
    let message = status.message();
    let described = || format!("{:?}: {message}", status.code());
    match status.code() {
        _ if is_connect_error(status) => Failure::NotApplied(described()),
        // etcd refuses these before proposing anything (its gRPC interceptor
        // with require-leader set; its apply-lag and capability checks).
        Code::Unavailable
            if message.contains("no leader")
                || message.contains("too many requests")
                || message.contains("not capable") =>
        {
            Failure::NoLeader(described())
        }
        Code::Unavailable if message.contains("leader changed") => {
            Failure::Interrupted(described())
        }
        // Everything else transient: a lost connection, a proposal that timed
        // out ("request timed out") or was cut by a leader change.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
            Failure::Unknown(described())
        }
        Code::Unknown | Code::Internal if is_transport_error(status) => {
            Failure::Unknown(described())
        }
        _ => Failure::Final(crate::map_status(status)),
    }
}

/// Whether the channel could not connect at all (so nothing was sent).
fn is_connect_error(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    status.message().contains("tcp connect error")
}

/// Whether a status without an etcd code came from the connection failing.
fn is_transport_error(status: &tonic::Status) -> bool {
    let message = status.message();
    std::error::Error::source(status).is_some()
        || ["transport error", "connection", "h2 protocol", "broken pipe", "reset"]
            .iter()
            .any(|m| message.contains(m))
}

/// How a txn may be resent (see [`Resend`]).
pub(crate) fn txn_resend(req: &TxnRequest) -> Resend {
    let writes = |ops: &[TxnOp]| ops.iter().any(|op| !matches!(op, TxnOp::Range(_)));
    if !writes(&req.success) && !writes(&req.failure) {
        return Resend::Always;
    }
    if writes(&req.failure) {
        return Resend::Never;
    }
    let falsified = req.compares.iter().any(|c| {
        if c.op != CompareOp::Equal && c.op != CompareOp::Greater {
            return false;
        }
        req.success.iter().any(|op| match op {
            // A put moves mod_revision and version forward and creates a
            // missing key: `==` on those no longer holds.
            TxnOp::Put(p) if p.key == c.key => {
                c.op == CompareOp::Equal
                    && matches!(
                        c.target,
                        CompareTarget::ModRevision(_)
                            | CompareTarget::Version(_)
                            | CompareTarget::CreateRevision(0)
                    )
            }
            // A delete zeroes every number: `== n` and `> 0` for n > 0 fail.
            TxnOp::Delete(d) if d.range.contains(&c.key) => match (&c.target, c.op) {
                (
                    CompareTarget::ModRevision(n)
                    | CompareTarget::Version(n)
                    | CompareTarget::CreateRevision(n),
                    CompareOp::Equal,
                ) => *n > 0,
                (
                    CompareTarget::ModRevision(0)
                    | CompareTarget::Version(0)
                    | CompareTarget::CreateRevision(0),
                    CompareOp::Greater,
                ) => true,
                _ => false,
            },
            _ => false,
        })
    });
    if falsified { Resend::Guarded } else { Resend::Never }
}

impl Members {
    /// Sends a request: members in [`Members::order`], each attempt bounded by
    /// `attempt_timeout`, the whole within `deadline`. Rounds repeat with a
    /// short pause while no member can serve (an election).
    ///
    /// A request that may be resent is also resent soon after a new leader is
    /// reported: whatever an attempt was waiting on (the old leader itself, or
    /// a follower's forward to it) will not answer, so waiting out the attempt
    /// timeout would only add to the election's gap. The attempt gets
    /// [`LEADER_CHANGE_GRACE`] first: it may have been sent after the election.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        resend: Resend,
        attempt_timeout: Duration,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<Answer<T>, KvError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + deadline;
        let mut after_unknown = false;
        let mut last = String::from("no etcd member tried");
        let mut pause = Duration::from_millis(20);
        'rounds: loop {
            for i in self.order() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                let member = &self.list[i];
                let mut leader = self.leader_changes();
                let sent = async {
                    let client = member.client().await?;
                    attempt(client).await
                };
                let waited = remaining.min(attempt_timeout);
                let bounded = tokio::time::timeout(waited, sent);
                tokio::pin!(bounded);
                let outcome = if resend == Resend::Never {
                    Some(bounded.await)
                } else {
                    tokio::select! {
                        outcome = &mut bounded => Some(outcome),
                        // We learn of an election up to a probe interval late: an
                        // attempt sent after it is answered within moments, and
                        // abandoning it would make its own write look like a
                        // stranger's to the resend (an ambiguous answer). Only
                        // an attempt still waiting after the grace is given up.
                        Ok(()) = leader.changed() => {
                            tokio::time::timeout(LEADER_CHANGE_GRACE, &mut bounded).await.ok()
                        }
                    }
                };
                let failure = match outcome {
                    Some(Ok(Ok(value))) => {
                        self.answered(i);
                        return Ok(Answer { value, after_unknown });
                    }
                    Some(Ok(Err(e))) => classify(e),
                    Some(Err(_)) => Failure::Unknown(format!("no answer within {waited:?}")),
                    None => {
                        // Not the member's fault: start over from the new leader.
                        after_unknown = true;
                        last = format!("{} (the leader changed meanwhile)", member.endpoint);
                        continue 'rounds;
                    }
                };
                if let Failure::NotApplied(reason) | Failure::Unknown(reason) = &failure {
                    member.mark_down(reason);
                }
                match failure {
                    Failure::Final(e) => return Err(e),
                    Failure::NoLeader(reason) => last = reason,
                    Failure::NotApplied(reason) => last = reason,
                    Failure::Interrupted(reason) | Failure::Unknown(reason) => {
                        let reason = format!("{} ({reason})", member.endpoint);
                        if resend == Resend::Never {
                            return Err(KvError::OutcomeUnknown(reason));
                        }
                        after_unknown = true;
                        last = reason;
                    }
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            tokio::time::sleep(pause.min(remaining)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        if after_unknown && resend != Resend::Always {
            Err(KvError::OutcomeUnknown(last))
        } else {
            Err(KvError::Unavailable(format!("no etcd quorum answered: {last}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use ifc_kv::{Compare, DeleteRequest, PutRequest, RangeRequest};

    use super::*;

    fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> TxnRequest {
        TxnRequest { compares, success, failure }
    }

    fn put(key: &str) -> TxnOp {
        TxnOp::Put(PutRequest::new(key, "v"))
    }

    #[test]
    fn reads_resend_always() {
        let read = TxnOp::Range(RangeRequest::key("k"));
        assert_eq!(txn_resend(&txn(vec![], vec![read.clone()], vec![read])), Resend::Always);
    }

    #[test]
    fn a_compare_the_write_falsifies_guards_it() {
        let cases = [
            (Compare::mod_revision_is("k", 7), put("k")),
            (Compare::missing("k"), put("k")),
            (Compare::exists("k"), TxnOp::Delete(DeleteRequest::key("k"))),
            (Compare::mod_revision_is("k", 7), TxnOp::Delete(DeleteRequest::prefix("k"))),
        ];
        for (compare, op) in cases {
            let guarded = txn(vec![compare.clone()], vec![op.clone(), put("other")], vec![]);
            assert_eq!(txn_resend(&guarded), Resend::Guarded, "{compare:?} then {op:?}");
        }
    }

    #[test]
    fn unguarded_writes_are_never_resent() {
        // The compare is on another key, or a put keeps create_revision, or the
        // failure branch writes.
        let cases = [
            txn(vec![Compare::mod_revision_is("a", 7)], vec![put("k")], vec![]),
            txn(vec![Compare::exists("k")], vec![put("k")], vec![]),
            txn(vec![Compare::mod_revision_is("k", 7)], vec![put("k")], vec![put("x")]),
            txn(vec![], vec![put("k")], vec![]),
        ];
        for case in cases {
            assert_eq!(txn_resend(&case), Resend::Never, "{case:?}");
        }
    }
}
