//! Property test: random operation sequences run on the reference model and on
//! each backend; every answer, every revision and the watch history must match.
//!
//! Each case works under its own key prefix on one long-lived store, and the
//! model starts at the store's revision, so cases need no fresh store. Lease ids
//! differ between model and backend; answers are compared after mapping them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeyRange, KeyValue, KvError, KvStore,
    LeaseId, ModelStore, PutRequest, RangeRequest, RangeResponse, Revision, TxnOp, TxnOpResponse,
    TxnRequest, TxnResponse, WatchBatch, WatchRequest,
};
use ifc_testkit::{Backend, TestStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Clone, Debug)]
enum Range {
    Key(u8),
    Prefix,
    Span(u8, u8),
}

#[derive(Clone, Debug)]
enum SimpleOp {
    Put { key: u8, value: u8, lease: Option<usize>, prev: bool },
    Delete { range: Range, prev: bool },
    Read { range: Range, limit: u8, count: bool },
}

#[derive(Clone, Debug)]
enum Target {
    Value(u8),
    Version(u8),
    CreateRevision(u8),
    ModRevision(u8),
    Lease(Option<usize>),
}

#[derive(Clone, Debug)]
enum Op {
    Simple(SimpleOp),
    Txn { compares: Vec<(u8, u8, Target)>, success: Vec<SimpleOp>, failure: Vec<SimpleOp> },
    Grant,
    Revoke(usize),
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        (0u8..5).prop_map(Range::Key),
        Just(Range::Prefix),
        (0u8..5, 0u8..5).prop_map(|(a, b)| Range::Span(a.min(b), a.max(b))),
    ]
}

fn simple_op() -> impl Strategy<Value = SimpleOp> {
    prop_oneof![
        4 => (0u8..5, 0u8..4, proptest::option::of(0usize..3), any::<bool>())
            .prop_map(|(key, value, lease, prev)| SimpleOp::Put { key, value, lease, prev }),
        1 => (range(), any::<bool>()).prop_map(|(range, prev)| SimpleOp::Delete { range, prev }),
        2 => (range(), 0u8..3, any::<bool>())
            .prop_map(|(range, limit, count)| SimpleOp::Read { range, limit, count }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (0u8..4).prop_map(Target::Value),
        (0u8..3).prop_map(Target::Version),
        (0u8..8).prop_map(Target::CreateRevision),
        (0u8..8).prop_map(Target::ModRevision),
        proptest::option::of(0usize..3).prop_map(Target::Lease),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => simple_op().prop_map(Op::Simple),
        3 => (
            proptest::collection::vec((0u8..5, 0u8..4, target()), 0..3),
            proptest::collection::vec(simple_op(), 0..4),
            proptest::collection::vec(simple_op(), 0..3),
        )
            .prop_map(|(compares, success, failure)| Op::Txn { compares, success, failure }),
        1 => Just(Op::Grant),
        1 => (0usize..3).prop_map(Op::Revoke),
    ]
}

/// Turns generated ops into requests for one side (model or backend), given
/// that side's lease ids.
struct Builder<'a> {
    prefix: &'a str,
    base: Revision,
    leases: &'a [LeaseId],
}

impl Builder<'_> {
    fn key(&self, k: u8) -> Vec<u8> {
        format!("{}k{k}", self.prefix).into_bytes()
    }

    fn range(&self, r: &Range) -> KeyRange {
        match r {
            Range::Key(k) => KeyRange::Key(self.key(*k)),
            Range::Prefix => KeyRange::Prefix(self.prefix.as_bytes().to_vec()),
            Range::Span(a, b) => KeyRange::Span { start: self.key(*a), end: self.key(*b) },
        }
    }

    fn lease(&self, l: Option<usize>) -> LeaseId {
        l.and_then(|i| self.leases.get(i).copied()).unwrap_or(0)
    }

    fn op(&self, op: &SimpleOp) -> TxnOp {
        match op {
            SimpleOp::Put { key, value, lease, prev } => TxnOp::Put(PutRequest {
                key: self.key(*key),
                value: format!("v{value}").into_bytes(),
                lease: self.lease(*lease),
                prev_kv: *prev,
            }),
            SimpleOp::Delete { range, prev } => {
                TxnOp::Delete(DeleteRequest { range: self.range(range), prev_kv: *prev })
            }
            SimpleOp::Read { range, limit, count } => TxnOp::Range(RangeRequest {
                serializable: false,
                range: self.range(range),
                limit: i64::from(*limit),
                count: *count,
            }),
        }
    }

    fn txn(
        &self,
        compares: &[(u8, u8, Target)],
        success: &[SimpleOp],
        failure: &[SimpleOp],
    ) -> TxnRequest {
        let compares = compares
            .iter()
            .map(|(key, op, target)| {
                let op =
                    [CompareOp::Equal, CompareOp::NotEqual, CompareOp::Less, CompareOp::Greater]
                        [*op as usize];
                let target = match target {
                    Target::Value(v) => CompareTarget::Value(format!("v{v}").into_bytes()),
                    Target::Version(v) => CompareTarget::Version(i64::from(*v)),
                    Target::CreateRevision(d) => {
                        CompareTarget::CreateRevision(self.base + i64::from(*d))
                    }
                    Target::ModRevision(d) => CompareTarget::ModRevision(self.base + i64::from(*d)),
                    Target::Lease(l) => CompareTarget::Lease(self.lease(*l)),
                };
                Compare::new(self.key(*key), op, target)
            })
            .collect();
        TxnRequest {
            compares,
            success: success.iter().map(|o| self.op(o)).collect(),
            failure: failure.iter().map(|o| self.op(o)).collect(),
        }
    }
}

/// Rewrites a backend's lease ids into the model's.
fn map_kv(kv: &mut KeyValue, ids: &HashMap<LeaseId, LeaseId>) {
    if kv.lease != 0 {
        kv.lease = ids.get(&kv.lease).copied().unwrap_or(-1);
    }
}

fn map_txn(resp: &mut TxnResponse, ids: &HashMap<LeaseId, LeaseId>) {
    for r in &mut resp.responses {
        match r {
            TxnOpResponse::Range(r) => r.kvs.iter_mut().for_each(|kv| map_kv(kv, ids)),
            TxnOpResponse::Put(p) => p.prev_kv.iter_mut().for_each(|kv| map_kv(kv, ids)),
            TxnOpResponse::Delete(d) => d.prev_kvs.iter_mut().for_each(|kv| map_kv(kv, ids)),
        }
    }
}

fn error_kind(e: &KvError) -> String {
    match e {
        KvError::LeaseNotFound(_) => "LeaseNotFound".into(),
        KvError::InvalidArgument(_) => "InvalidArgument".into(),
        other => format!("{other:?}"),
    }
}

/// A limited read not asked to count may still count everything (etcd does):
/// the model's answer then holds the least a backend may say, `kvs + 1`, and
/// any count at least that is as good.
fn uncounted_may_count(got: &mut RangeResponse, expected: &RangeResponse) {
    let least = expected.kvs.len() as i64 + 1;
    if expected.more && expected.count == least && got.count >= least {
        got.count = least;
    }
}

/// A backend's txn answer, lease ids mapped to the model's, against the model's.
fn compare_answers(
    mut got: Result<TxnResponse, KvError>,
    expected: Result<TxnResponse, KvError>,
    ids: &HashMap<LeaseId, LeaseId>,
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    if let Ok(resp) = &mut got {
        map_txn(resp, ids);
    }
    if let (Ok(got), Ok(expected)) = (&mut got, &expected) {
        for (got, expected) in got.responses.iter_mut().zip(&expected.responses) {
            if let (TxnOpResponse::Range(got), TxnOpResponse::Range(expected)) = (got, expected) {
                uncounted_may_count(got, expected);
            }
        }
    }
    prop_assert_eq!(
        got.map_err(|e| error_kind(&e)),
        expected.map_err(|e| error_kind(&e)),
        "step {}: {:?}",
        step,
        op
    );
    Ok(())
}

async fn run_case(kv: &dyn KvStore, case: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let prefix = format!("case{case:04}/");
    let base = kv.range(RangeRequest::key("\0")).await.unwrap().revision;
    let mut model = ModelStore::starting_at(base);
    let mut model_leases: Vec<LeaseId> = Vec::new();
    let mut real_leases: Vec<LeaseId> = Vec::new();
    let mut ids: HashMap<LeaseId, LeaseId> = HashMap::new();

    for (step, op) in ops.iter().enumerate() {
        let on_model = Builder { prefix: &prefix, base, leases: &model_leases };
        let on_real = Builder { prefix: &prefix, base, leases: &real_leases };
        match op {
            Op::Grant => {
                let real = kv.lease_grant(600).await.unwrap();
                let id = model.lease_grant();
                ids.insert(real.id, id);
                model_leases.push(id);
                real_leases.push(real.id);
            }
            Op::Revoke(i) => {
                let (Some(m), Some(r)) = (model_leases.get(*i), real_leases.get(*i)) else {
                    continue;
                };
                let expected = model.lease_revoke(*m).map_err(|e| error_kind(&e));
                let got = kv.lease_revoke(*r).await.map_err(|e| error_kind(&e));
                prop_assert_eq!(got, expected, "step {}: revoke", step);
            }
            Op::Simple(simple) => {
                let (simple, single) = (std::slice::from_ref(simple), &[][..]);
                let expected = model.txn(&on_model.txn(&[], simple, single));
                let got = kv.txn(on_real.txn(&[], simple, single)).await;
                compare_answers(got, expected, &ids, step, op)?;
            }
            Op::Txn { compares, success, failure } => {
                let expected = model.txn(&on_model.txn(compares, success, failure));
                let got = kv.txn(on_real.txn(compares, success, failure)).await;
                compare_answers(got, expected, &ids, step, op)?;
            }
        }
        let now = kv.range(RangeRequest::key("\0")).await.unwrap().revision;
        prop_assert_eq!(now, model.revision(), "step {}: revision", step);
    }

    // The whole key space of the case, and every lease's keys, agree.
    let mut stored = kv.range(RangeRequest::prefix(prefix.as_str())).await.unwrap();
    stored.kvs.iter_mut().for_each(|kv| map_kv(kv, &ids));
    prop_assert_eq!(stored, model.range(&RangeRequest::prefix(prefix.as_str())).unwrap());
    for (m, r) in model_leases.iter().zip(&real_leases) {
        let real = kv.lease_time_to_live(*r).await.unwrap().map(|s| s.keys);
        prop_assert_eq!(real, model.lease_keys(*m), "keys of lease {}", m);
    }

    // The watch history of the case replays exactly the model's changes.
    let expected: Vec<WatchBatch> = model
        .history_from(base + 1)
        .map(|b| {
            let mut b = b.clone();
            for e in &mut b.events {
                e.prev_kv = None;
            }
            b
        })
        .collect();
    if let Some(last) = expected.last().map(|b| b.revision) {
        let mut stream =
            kv.watch(WatchRequest::prefix(prefix.as_str()).from_revision(base + 1)).await.unwrap();
        let mut got = Vec::new();
        while got.last().map(|b: &WatchBatch| b.revision) != Some(last) {
            let mut batch = tokio::time::timeout(Duration::from_secs(15), stream.next())
                .await
                .expect("history within the wait")
                .expect("stream open")
                .expect("no watch error");
            batch.events.iter_mut().for_each(|e| map_kv(&mut e.kv, &ids));
            got.push(batch);
        }
        prop_assert_eq!(got, expected);
    }
    for r in &real_leases {
        let _ = kv.lease_revoke(*r).await;
    }
    Ok(())
}

fn check(backend: Backend, cases: u32) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = runtime.block_on(TestStore::start(backend));
    let kv = store.kv();
    let mut runner =
        TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&proptest::collection::vec(op(), 1..24), |ops| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(run_case(kv.as_ref(), case, &ops))
    });
    if let Err(e) = result {
        panic!("{backend:?}: {e}");
    }
}

#[test]
fn embedded_matches_the_model() {
    check(Backend::Embedded, 96);
}

#[test]
fn etcd_matches_the_model() {
    check(Backend::Etcd, 48);
}
