//! The contract's requests, each sent through the failover path with the
//! resend rule that fits it.

use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{LeaseTimeToLiveOptions, Txn, TxnOpResponse as EtcdTxnOpResponse};
use ifc_kv::{
    DeleteRequest, DeleteResponse, KvError, KvStore, Lease, LeaseId, LeaseStatus, PutRequest,
    PutResponse, RangeRequest, RangeResponse, Revision, StoreHealth, TxnOp, TxnOpResponse,
    TxnRequest, TxnResponse, WatchRequest, WatchStream,
};
use tokio::sync::mpsc;

use crate::convert::{
    compare_to_etcd, delete_options, delete_response, get_options, header_revision, kv_from,
    op_to_etcd, put_options, range_response, with_lease_id,
};
use crate::retry::{Resend, txn_resend};
use crate::{EtcdStore, txn_lease};

#[async_trait]
impl KvStore for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, KvError> {
        self.shared.limits.check_range_request(&req)?;
        let (key, options) = get_options(&req);
        let resp = self
            .call(Resend::Always, |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.get(key, Some(options)).await }
            })
            .await?
            .value;
        Ok(range_response(&resp, header_revision(resp.header())))
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, KvError> {
        self.shared.limits.check_put(&req)?;
        let resp = self
            .call(Resend::Never, |mut c| {
                let (key, value, options) = (req.key.clone(), req.value.clone(), put_options(&req));
                async move { c.put(key, value, Some(options)).await }
            })
            .await
            .map_err(|e| with_lease_id(e, req.lease))?
            .value;
        Ok(PutResponse {
            revision: header_revision(resp.header()),
            prev_kv: if req.prev_kv { resp.prev_key().map(kv_from) } else { None },
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, KvError> {
        self.shared.limits.check_delete(&req)?;
        let (key, options) = delete_options(&req);
        let resp = self
            .call(Resend::Never, |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.delete(key, Some(options)).await }
            })
            .await?
            .value;
        Ok(delete_response(&resp, header_revision(resp.header()), req.prev_kv))
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, KvError> {
        self.shared.limits.check_txn(&req)?;
        let txn = Txn::new()
            .when(req.compares.iter().map(compare_to_etcd).collect::<Vec<_>>())
            .and_then(req.success.iter().map(op_to_etcd).collect::<Vec<_>>())
            .or_else(req.failure.iter().map(op_to_etcd).collect::<Vec<_>>());
        let resend = txn_resend(&req);
        let answer = self
            .call(resend, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(|e| with_lease_id(e, txn_lease(&req)))?;
        let resp = answer.value;
        // A guarded txn resent after an attempt whose answer was lost: a
        // failed compare may be that first attempt's own write.
        if resend == Resend::Guarded && answer.after_unknown && !resp.succeeded() {
            return Err(KvError::OutcomeUnknown(
                "a txn's answer was lost and its resend found the compares false: the first \
                 attempt may have applied"
                    .into(),
            ));
        }
        let revision = header_revision(resp.header());
        let branch = if resp.succeeded() { &req.success } else { &req.failure };
        let responses = resp
            .op_responses()
            .iter()
            .zip(branch)
            .map(|(r, op)| match (r, op) {
                (EtcdTxnOpResponse::Get(g), _) => {
                    Ok(TxnOpResponse::Range(range_response(g, revision)))
                }
                (EtcdTxnOpResponse::Put(p), TxnOp::Put(put)) => {
                    Ok(TxnOpResponse::Put(PutResponse {
                        revision,
                        prev_kv: if put.prev_kv { p.prev_key().map(kv_from) } else { None },
                    }))
                }
                (EtcdTxnOpResponse::Delete(d), TxnOp::Delete(del)) => {
                    Ok(TxnOpResponse::Delete(delete_response(d, revision, del.prev_kv)))
                }
                (other, _) => Err(KvError::Backend(format!(
                    "etcd answered {other:?} to a different operation"
                ))),
            })
            .collect::<Result<Vec<_>, KvError>>()?;
        Ok(TxnResponse { succeeded: resp.succeeded(), responses, revision })
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, KvError> {
        self.shared.limits.check_range(&req.range)?;
        if req.start_revision < 0 {
            return Err(KvError::InvalidArgument("negative start revision".into()));
        }
        let (tx, mut rx) = mpsc::channel(64);
        let mut start = req.start_revision;
        if start == 0 {
            // Pin "now" before returning, so no event after this call is missed.
            start = self.range(RangeRequest::key("\0")).await?.revision + 1;
        }
        tokio::spawn(crate::watch::run_watch(Arc::clone(&self.shared), req, start, tx));
        Ok(Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease, KvError> {
        self.shared.limits.check_ttl(ttl_secs)?;
        // A grant whose answer was lost leaves a lease nobody holds: it expires.
        let resp = self
            .call(Resend::Always, |mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?
            .value;
        Ok(Lease { id: resp.id(), ttl: resp.ttl() })
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64, KvError> {
        let ttl = self
            .call(Resend::Always, |c| async move {
                let (mut keeper, mut stream) = c.lease_client().keep_alive(id).await?;
                // The first answer only proved the lease exists; ask once more for its TTL.
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map_or(0, |resp| resp.ttl()))
            })
            .await
            .map_err(|e| with_lease_id(e, id))?
            .value;
        if ttl > 0 { Ok(ttl) } else { Err(KvError::LeaseNotFound(id)) }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<Revision, KvError> {
        // Revoking twice deletes nothing more: the second finds no lease.
        let resp = self
            .call(Resend::Always, |mut c| async move { c.lease_revoke(id).await })
            .await
            .map_err(|e| with_lease_id(e, id))?
            .value;
        Ok(header_revision(resp.header()))
    }

    async fn lease_time_to_live(&self, id: LeaseId) -> Result<Option<LeaseStatus>, KvError> {
        let resp = self
            .call(Resend::Always, |mut c| async move {
                c.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())).await
            })
            .await?
            .value;
        // etcd answers TTL -1 for a lease it does not know.
        if resp.ttl() < 0 {
            return Ok(None);
        }
        let mut keys = resp.keys().to_vec();
        keys.sort();
        Ok(Some(LeaseStatus {
            id,
            granted_ttl: resp.granted_ttl(),
            remaining_ttl: resp.ttl(),
            keys,
        }))
    }

    async fn compact(&self, revision: Revision) -> Result<(), KvError> {
        let answer =
            self.call(Resend::Always, |mut c| async move { c.compact(revision, None).await }).await;
        match answer {
            Ok(_) => Ok(()),
            Err(KvError::FutureRevision { .. }) => {
                let current = self.range(RangeRequest::key("\0")).await?.revision;
                Err(KvError::FutureRevision { requested: revision, current })
            }
            // etcd does not say where it compacted to; the refused revision is at
            // or below it, which is what a caller needs.
            Err(KvError::Compacted { .. }) => {
                Err(KvError::Compacted { compact_revision: revision })
            }
            Err(e) => Err(e),
        }
    }

    async fn health(&self) -> StoreHealth {
        let shared = &self.shared;
        let members = shared.members.list.len();
        // A linearizable read needs the leader to confirm it still leads a
        // quorum: the one probe that proves the cluster can serve.
        let quorum_read = shared.members.call(
            Resend::Always,
            crate::members::PROBE_TIMEOUT,
            crate::members::PROBE_TIMEOUT * 2,
            |mut c| async move { c.get("\0", None).await },
        );
        let (answering, quorum) = tokio::join!(shared.members.answering(), quorum_read);
        StoreHealth { members, answering, quorum: quorum.is_ok() }
    }
}
