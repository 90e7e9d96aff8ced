//! Prometheus metrics, kept in atomics and rendered as text on `/metrics`.
//! Histograms have fixed buckets (seconds), as Prometheus expects.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ifc_kv::{
    DeleteRequest, DeleteResponse, KvError, KvStore, Lease, LeaseId, LeaseStatus, PutRequest,
    PutResponse, RangeRequest, RangeResponse, Revision, TxnRequest, TxnResponse, WatchRequest,
    WatchStream,
};

const BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// The kinds of event stream, as labelled in `ifc_open_streams{kind}`.
pub(crate) const STREAM_KINDS: [&str; 4] = ["inbox", "blockers", "events", "kv"];

/// Buckets for claim-to-complete durations (seconds): work takes longer.
const WORK_BUCKETS: [f64; 12] =
    [0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0];

/// One latency histogram.
pub struct Histogram {
    bounds: &'static [f64; 12],
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_bounds(&BUCKETS)
    }
}

impl Histogram {
    fn with_bounds(bounds: &'static [f64; 12]) -> Self {
        Histogram {
            bounds,
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bucket, le) in self.buckets.iter().zip(self.bounds) {
            if secs <= *le {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bucket, le) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Every metric of one server.
pub struct Metrics {
    /// Request latency per method and route template.
    requests: Mutex<BTreeMap<(String, String), std::sync::Arc<Histogram>>>,
    /// Responses per method, route and status.
    responses: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Witnessed operations by name (claims, completions, failures, …).
    operations: Mutex<BTreeMap<String, u64>>,
    /// Store transaction latency.
    pub store_txn: Histogram,
    /// Open server-sent-event streams by kind (inbox, blockers, events).
    open_streams: Mutex<BTreeMap<&'static str, i64>>,
    /// From claim to completion, per completed task (through this node).
    claim_to_complete: Histogram,
    /// Tasks by state, as the background refresh last read them (the
    /// `/metrics` handler never waits on the store for them).
    task_states: Mutex<Option<ifc_api::StateCounts>>,
    /// Live swarms, as the same background refresh last counted them.
    live_swarms: Mutex<Option<usize>>,
    /// Whether the background refresh of `task_states` runs.
    task_gauge_started: std::sync::atomic::AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            responses: Mutex::default(),
            operations: Mutex::default(),
            store_txn: Histogram::default(),
            open_streams: Mutex::default(),
            claim_to_complete: Histogram::with_bounds(&WORK_BUCKETS),
            task_states: Mutex::default(),
            live_swarms: Mutex::default(),
            task_gauge_started: Default::default(),
        }
    }
}

/// How often the `ifc_tasks{state}` and `ifc_live_swarms` gauges are read
/// from the store.
pub const TASK_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Starts refreshing the `ifc_tasks{state}` and `ifc_live_swarms` gauges every
/// [`TASK_GAUGE_INTERVAL`] in the background (once per metrics, and only
/// inside a Tokio runtime). It ends when the state's core or metrics go.
pub(crate) fn spawn_task_gauge(state: &crate::state::AppState) {
    if state.metrics.task_gauge_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        state.metrics.task_gauge_started.store(false, Ordering::SeqCst);
        return;
    };
    let core = std::sync::Arc::downgrade(&state.core);
    let metrics = std::sync::Arc::downgrade(&state.metrics);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(TASK_GAUGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else { return };
            // A failed read leaves the last value in place; the next tick retries.
            let counts = core.task_counts().await;
            // A count, not a listing: etcd answers it without sending the keys.
            let swarms = RangeRequest::prefix(core.keys().swarms()).count_only();
            let swarms = core.store().range(swarms).await;
            drop(core);
            let Some(metrics) = metrics.upgrade() else { return };
            if let Ok(counts) = counts {
                *metrics.task_states.lock().unwrap_or_else(|e| e.into_inner()) = Some(counts);
            }
            if let Ok(swarms) = swarms {
                let live = usize::try_from(swarms.count).unwrap_or(0);
                *metrics.live_swarms.lock().unwrap_or_else(|e| e.into_inner()) = Some(live);
            }
        }
    });
}

impl Metrics {
    /// Records one request.
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let key = (method.to_string(), route.to_string());
        let histogram = {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            requests.entry(key.clone()).or_default().clone()
        };
        histogram.observe(elapsed);
        let mut responses = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *responses.entry((key.0, key.1, status)).or_default() += 1;
    }

    /// One more open stream of `kind`.
    pub(crate) fn stream_opened(&self, kind: &'static str) {
        *self.open_streams.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
    }

    /// One fewer open stream of `kind`.
    pub(crate) fn stream_closed(&self, kind: &'static str) {
        *self.open_streams.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() -= 1;
    }

    /// Open streams of every kind.
    pub fn open_streams(&self) -> i64 {
        self.open_streams.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    /// Records a completed task's time from its claim to its completion.
    pub fn completed(&self, claimed_at_ms: i64, completed_at_ms: i64) {
        let millis = completed_at_ms.saturating_sub(claimed_at_ms).max(0);
        self.claim_to_complete.observe(Duration::from_millis(millis as u64));
    }

    /// Counts one witnessed operation.
    pub fn operation(&self, op: &str) {
        let mut operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        *operations.entry(op.to_string()).or_default() += 1;
    }

    /// The Prometheus text, from what this node already holds: it never
    /// waits on the store (the gauges read from it are refreshed in the
    /// background).
    pub fn render(&self) -> String {
        let live_swarms = *self.live_swarms.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP ifc_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE ifc_http_request_duration_seconds histogram\n");
        for ((method, route), histogram) in
            self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            histogram.render(
                &mut out,
                "ifc_http_request_duration_seconds",
                &format!("method=\"{method}\",route=\"{route}\""),
            );
        }
        out.push_str("# HELP ifc_http_responses_total Responses by route and status.\n");
        out.push_str("# TYPE ifc_http_responses_total counter\n");
        for ((method, route, status), n) in
            self.responses.lock().unwrap_or_else(|e| e.into_inner()).iter()
        {
            let _ = writeln!(
                out,
                "ifc_http_responses_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP ifc_operations_total Witnessed operations (claims, completions, failures, \
             dead-letters, …) by this node.\n",
        );
        out.push_str("# TYPE ifc_operations_total counter\n");
        for (op, n) in self.operations.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "ifc_operations_total{{op=\"{op}\"}} {n}");
        }
        out.push_str("# HELP ifc_store_txn_duration_seconds Store transaction latency.\n");
        out.push_str("# TYPE ifc_store_txn_duration_seconds histogram\n");
        self.store_txn.render(&mut out, "ifc_store_txn_duration_seconds", "");
        out.push_str(
            "# HELP ifc_open_streams Open event streams by kind.\n# TYPE ifc_open_streams gauge\n",
        );
        let open = self.open_streams.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for kind in STREAM_KINDS {
            let n = open.get(kind).copied().unwrap_or(0);
            let _ = writeln!(out, "ifc_open_streams{{kind=\"{kind}\"}} {n}");
        }
        out.push_str(
            "# HELP ifc_claim_to_complete_seconds From a task's claim to its completion.\n\
             # TYPE ifc_claim_to_complete_seconds histogram\n",
        );
        self.claim_to_complete.render(&mut out, "ifc_claim_to_complete_seconds", "");
        out.push_str("# HELP ifc_build_info The running build.\n# TYPE ifc_build_info gauge\n");
        let _ = writeln!(out, "ifc_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        crate::process::render(&mut out);
        let task_states = self.task_states.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(counts) = task_states {
            out.push_str(
                "# HELP ifc_tasks Tasks by state (refreshed in the background every 5 s).\n\
                 # TYPE ifc_tasks gauge\n",
            );
            for (state, n) in [
                ("ready", counts.ready),
                ("claimed", counts.claimed),
                ("completed", counts.completed),
                ("dead", counts.dead),
                ("cancelled", counts.cancelled),
            ] {
                let _ = writeln!(out, "ifc_tasks{{state=\"{state}\"}} {n}");
            }
        }
        if let Some(live) = live_swarms {
            out.push_str(
                "# HELP ifc_live_swarms Registered, live swarms.\n# TYPE ifc_live_swarms gauge\n",
            );
            let _ = writeln!(out, "ifc_live_swarms {live}");
        }
        out
    }
}

/// A store that times its transactions into [`Metrics::store_txn`].
pub struct MeteredStore {
    inner: std::sync::Arc<dyn KvStore>,
    metrics: std::sync::Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: std::sync::Arc<dyn KvStore>, metrics: std::sync::Arc<Metrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

#[async_trait]
impl KvStore for MeteredStore {
    async fn health(&self) -> ifc_kv::StoreHealth {
        self.inner.health().await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        self.inner.range(req).await
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError> {
        self.inner.put(req).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError> {
        self.inner.delete(req).await
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError> {
        let started = std::time::Instant::now();
        let result = self.inner.txn(req).await;
        self.metrics.store_txn.observe(started.elapsed());
        result
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError> {
        self.inner.watch(req).await
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError> {
        self.inner.lease_grant(ttl_secs).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError> {
        self.inner.lease_revoke(id).await
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError> {
        self.inner.lease_time_to_live(id).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        self.inner.compact(revision).await
    }
}
