//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use ifc_core::Coordinator;

use crate::auth::TokenDigest;
use crate::metrics::Metrics;

/// How long a stream reader may leave its buffer full before it is cut off (by
/// default; see [`AppState::with_slow_reader_timeout`]).
pub const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) core: Arc<Coordinator>,
    pub(crate) admin_token: TokenDigest,
    /// The read-only viewer's token, if there is one.
    pub(crate) viewer_token: Option<TokenDigest>,
    pub(crate) metrics: Arc<Metrics>,
    /// How long a stream reader may leave its buffer full before it is cut off.
    pub(crate) slow_reader_timeout: Duration,
    /// Ends every open event stream on shutdown.
    pub(crate) streams_closing: crate::sse::StreamsClosing,
    /// Claims and completions per minute, for the dashboard.
    pub(crate) throughput: Arc<crate::throughput::Throughput>,
}

impl AppState {
    /// State for a server over `core`, accepting `admin_token` as the
    /// orchestrator's token. Pass the `metrics` the core's witness logger and
    /// store wrapper feed.
    pub fn new(core: Arc<Coordinator>, admin_token: &str, metrics: Arc<Metrics>) -> Self {
        AppState {
            core,
            admin_token: TokenDigest::new(admin_token),
            viewer_token: None,
            metrics,
            slow_reader_timeout: SLOW_READER_TIMEOUT,
            streams_closing: Default::default(),
            throughput: Default::default(),
        }
    }

    /// Ends every open event stream (call on shutdown, before waiting for the
    /// server to finish): each gets a final `error` event with code
    /// `shutting_down` naming the revision to resume after. Streams opened
    /// later end at once the same way.
    pub fn close_streams(&self) {
        self.streams_closing.close_all();
    }

    /// Accepts `viewer_token` as the read-only viewer's token: `GET` routes
    /// (and the event and blocker streams) only.
    pub fn with_viewer_token(mut self, viewer_token: &str) -> Self {
        self.viewer_token = Some(TokenDigest::new(viewer_token));
        self
    }

    /// Cuts off stream readers that leave their buffer full this long (default
    /// [`SLOW_READER_TIMEOUT`]).
    pub fn with_slow_reader_timeout(mut self, timeout: Duration) -> Self {
        self.slow_reader_timeout = timeout;
        self
    }
}
