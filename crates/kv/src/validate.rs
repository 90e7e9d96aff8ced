//! Request checks shared by every backend, so that all of them refuse the same
//! requests with the same [`KvError::InvalidArgument`] before anything is written.

use crate::{DeleteRequest, KeyRange, KvError, PutRequest, RangeRequest, TxnOp, TxnRequest};

/// Size limits. The defaults stay inside etcd's default 1.5 MiB request limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Longest value, in bytes.
    pub max_value_bytes: usize,
    /// Most operations in one txn branch (etcd's default `--max-txn-ops` is 128).
    pub max_txn_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_key_bytes: 4096, max_value_bytes: 1_310_720, max_txn_ops: 128 }
    }
}

fn invalid(message: impl Into<String>) -> KvError {
    KvError::InvalidArgument(message.into())
}

impl Limits {
    /// Checks a key range.
    pub fn check_range(&self, range: &KeyRange) -> Result<(), KvError> {
        match range {
            KeyRange::Key(k) => self.check_key(k),
            KeyRange::Prefix(p) => self.check_len(p),
            KeyRange::Span { start, end } => {
                self.check_key(start)?;
                self.check_len(end)?;
                if end < start {
                    return Err(invalid("inverted range: end is below start"));
                }
                Ok(())
            }
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), KvError> {
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        self.check_len(key)
    }

    fn check_len(&self, key: &[u8]) -> Result<(), KvError> {
        if key.len() > self.max_key_bytes {
            return Err(invalid(format!(
                "key of {} bytes exceeds the limit of {}",
                key.len(),
                self.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Checks a read.
    pub fn check_range_request(&self, req: &RangeRequest) -> Result<(), KvError> {
        if req.limit < 0 {
            return Err(invalid("negative limit"));
        }
        self.check_range(&req.range)
    }

    /// Checks a write.
    pub fn check_put(&self, req: &PutRequest) -> Result<(), KvError> {
        self.check_key(&req.key)?;
        if req.value.len() > self.max_value_bytes {
            return Err(invalid(format!(
                "value of {} bytes exceeds the limit of {}",
                req.value.len(),
                self.max_value_bytes
            )));
        }
        if req.lease < 0 {
            return Err(invalid("negative lease id"));
        }
        Ok(())
    }

    /// Checks a delete.
    pub fn check_delete(&self, req: &DeleteRequest) -> Result<(), KvError> {
        self.check_range(&req.range)
    }

    /// Checks a txn: every op, every compare key, and (as etcd does) that no branch
    /// puts one key twice or puts a key it also deletes.
    pub fn check_txn(&self, req: &TxnRequest) -> Result<(), KvError> {
        for compare in &req.compares {
            self.check_key(&compare.key)?;
        }
        for branch in [&req.success, &req.failure] {
            if branch.len() > self.max_txn_ops {
                return Err(invalid(format!(
                    "txn branch has {} operations, more than the limit of {}",
                    branch.len(),
                    self.max_txn_ops
                )));
            }
            let mut put_keys: Vec<&[u8]> = Vec::new();
            let mut delete_ranges: Vec<&KeyRange> = Vec::new();
            for op in branch {
                match op {
                    TxnOp::Range(r) => self.check_range_request(r)?,
                    TxnOp::Put(p) => {
                        self.check_put(p)?;
                        put_keys.push(&p.key);
                    }
                    TxnOp::Delete(d) => {
                        self.check_delete(d)?;
                        delete_ranges.push(&d.range);
                    }
                }
            }
            put_keys.sort_unstable();
            if put_keys.windows(2).any(|w| w[0] == w[1]) {
                return Err(invalid("duplicate key given in txn request"));
            }
            if put_keys.iter().any(|k| delete_ranges.iter().any(|r| r.contains(k))) {
                return Err(invalid("duplicate key given in txn request"));
            }
        }
        Ok(())
    }

    /// Checks a lease TTL.
    pub fn check_ttl(&self, ttl_secs: i64) -> Result<(), KvError> {
        // etcd's MaxLeaseTTL.
        const MAX_LEASE_TTL: i64 = 9_000_000_000;
        if ttl_secs <= 0 || ttl_secs > MAX_LEASE_TTL {
            return Err(invalid(format!("lease TTL {ttl_secs} is outside 1..={MAX_LEASE_TTL}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compare, TxnOp};

    #[test]
    fn refuses_put_and_delete_of_one_key_in_one_branch() {
        let txn = TxnRequest::new()
            .and_then(TxnOp::Put(PutRequest::new("a/1", "x")))
            .and_then(TxnOp::Delete(DeleteRequest::prefix("a/")));
        assert!(matches!(Limits::default().check_txn(&txn), Err(KvError::InvalidArgument(_))));
    }

    #[test]
    fn allows_the_same_key_in_different_branches() {
        let txn = TxnRequest::new()
            .when(Compare::missing("k"))
            .and_then(TxnOp::Put(PutRequest::new("k", "1")))
            .or_else(TxnOp::Put(PutRequest::new("k", "2")));
        assert_eq!(Limits::default().check_txn(&txn), Ok(()));
    }

    #[test]
    fn refuses_inverted_span_and_empty_key() {
        let limits = Limits::default();
        let inverted = KeyRange::Span { start: b"b".to_vec(), end: b"a".to_vec() };
        assert!(limits.check_range(&inverted).is_err());
        assert!(limits.check_range(&KeyRange::Key(Vec::new())).is_err());
        assert!(limits.check_range(&KeyRange::Prefix(Vec::new())).is_ok());
    }
}
