//! Reading a key range in bounded pages, so no single store request (etcd's
//! gRPC answer is capped at 4 MiB) and no single buffer grows with the range.
//!
//! Each page continues just after the last key of the one before. Pages are
//! separate reads, not one snapshot: a key written during the walk may or may
//! not be seen, which every caller tolerates (the witness log only appends;
//! indexes are rechecked by CAS before anything is written from them).

use ifc_kv::{KeyRange, KeyValue, KvStore, RangeRequest, prefix_end};

use crate::CoreError;

/// Keys per page: far below etcd's 4 MiB answer limit for our record sizes.
pub(crate) const PAGE_SIZE: i64 = 1000;

/// A walk over `[start, end)` in pages of at most `page_size` keys.
#[derive(Clone, Debug)]
pub(crate) struct Pager {
    next: Option<Vec<u8>>,
    end: Vec<u8>,
    page_size: i64,
    /// Each page read on the member that serves it, without a consensus
    /// round (see [`Pager::serializable`]).
    serializable: bool,
}

impl Pager {
    fn new(start: Vec<u8>, end: Vec<u8>) -> Self {
        Pager { next: Some(start), end, page_size: PAGE_SIZE, serializable: false }
    }

    /// Every key under `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        Pager::new(start.clone(), prefix_end(&start))
    }

    /// Every key under `prefix` from `from` (included) on.
    pub fn prefix_from(prefix: impl Into<Vec<u8>>, from: impl Into<Vec<u8>>) -> Self {
        let prefix = prefix.into();
        let from = from.into();
        let start = if from > prefix { from } else { prefix.clone() };
        Pager::new(start, prefix_end(&prefix))
    }

    /// Every key in `[start, end)`.
    pub fn span(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Pager::new(start.into(), end.into())
    }

    /// Pages of `page_size` keys instead.
    #[allow(dead_code)] // Used by tests and callers that want smaller pages.
    pub fn with_page_size(mut self, page_size: i64) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Pages read serializably: on etcd from the member that answers, with no
    /// consensus round, so a page may miss the latest writes. For answers
    /// that are advice, not decisions.
    pub fn serializable(mut self) -> Self {
        self.serializable = true;
        self
    }

    /// The next page, `None` once the range is done.
    pub async fn next_page(
        &mut self,
        store: &dyn KvStore,
    ) -> Result<Option<Vec<KeyValue>>, CoreError> {
        let Some(start) = self.next.take() else { return Ok(None) };
        if self.end != [0] && start >= self.end {
            return Ok(None);
        }
        let range = KeyRange::Span { start, end: self.end.clone() };
        let mut request = RangeRequest::new(range).with_limit(self.page_size);
        if self.serializable {
            request = request.serializable();
        }
        let resp = store.range(request).await?;
        if let Some(last) = resp.kvs.last().filter(|_| resp.more) {
            // The smallest key after `last`.
            let mut after = last.key.clone();
            after.push(0);
            self.next = Some(after);
        }
        if resp.kvs.is_empty() { Ok(None) } else { Ok(Some(resp.kvs)) }
    }
}

/// Every key under `prefix`, read page by page (bounded requests; the result
/// is still whole, for callers that need it all).
pub(crate) async fn range_all(
    store: &dyn KvStore,
    prefix: impl Into<Vec<u8>>,
) -> Result<Vec<KeyValue>, CoreError> {
    let mut pager = Pager::prefix(prefix);
    let mut all = Vec::new();
    while let Some(page) = pager.next_page(store).await? {
        all.extend(page);
    }
    Ok(all)
}
