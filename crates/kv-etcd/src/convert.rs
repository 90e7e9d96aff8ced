//! Mapping between the contract's requests and etcd-client's, both ways.

use etcd_client::{
    Compare as EtcdCompare, CompareOp as EtcdCompareOp, DeleteOptions, GetOptions, PutOptions,
    TxnOp as EtcdTxnOp,
};
use ifc_kv::{
    Compare, CompareOp, CompareTarget, DeleteRequest, DeleteResponse, KeyValue, KvError, LeaseId,
    PutRequest, RangeRequest, RangeResponse, Revision, TxnOp,
};

pub(crate) fn with_lease_id(e: KvError, id: LeaseId) -> KvError {
    match e {
        KvError::LeaseNotFound(_) => KvError::LeaseNotFound(id),
        e => e,
    }
}

pub(crate) fn kv_from(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

pub(crate) fn get_options(req: &RangeRequest) -> (Vec<u8>, GetOptions) {
    let (key, end) = req.range.to_etcd();
    let mut options = GetOptions::new().with_limit(req.limit);
    if req.serializable {
        options = options.with_serializable();
    }
    if !end.is_empty() {
        options = options.with_range(end);
    }
    (key, options)
}

pub(crate) fn delete_options(req: &DeleteRequest) -> (Vec<u8>, DeleteOptions) {
    let (key, end) = req.range.to_etcd();
    let mut options = DeleteOptions::new();
    if !end.is_empty() {
        options = options.with_range(end);
    }
    if req.prev_kv {
        options = options.with_prev_key();
    }
    (key, options)
}

pub(crate) fn put_options(req: &PutRequest) -> PutOptions {
    let mut options = PutOptions::new();
    if req.lease != 0 {
        options = options.with_lease(req.lease);
    }
    if req.prev_kv {
        options = options.with_prev_key();
    }
    options
}

pub(crate) fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

pub(crate) fn compare_to_etcd(c: &Compare) -> EtcdCompare {
    let op = match c.op {
        CompareOp::Equal => EtcdCompareOp::Equal,
        CompareOp::NotEqual => EtcdCompareOp::NotEqual,
        CompareOp::Less => EtcdCompareOp::Less,
        CompareOp::Greater => EtcdCompareOp::Greater,
    };
    let key = c.key.clone();
    match &c.target {
        CompareTarget::Value(v) => EtcdCompare::value(key, op, v.clone()),
        CompareTarget::Version(v) => EtcdCompare::version(key, op, *v),
        CompareTarget::CreateRevision(r) => EtcdCompare::create_revision(key, op, *r),
        CompareTarget::ModRevision(r) => EtcdCompare::mod_revision(key, op, *r),
        CompareTarget::Lease(l) => EtcdCompare::lease(key, op, *l),
    }
}

pub(crate) fn op_to_etcd(op: &TxnOp) -> EtcdTxnOp {
    match op {
        TxnOp::Range(r) => {
            let (key, options) = get_options(r);
            EtcdTxnOp::get(key, Some(options))
        }
        TxnOp::Put(p) => EtcdTxnOp::put(p.key.clone(), p.value.clone(), Some(put_options(p))),
        TxnOp::Delete(d) => {
            let (key, options) = delete_options(d);
            EtcdTxnOp::delete(key, Some(options))
        }
    }
}

pub(crate) fn range_response(resp: &etcd_client::GetResponse, revision: Revision) -> RangeResponse {
    RangeResponse {
        kvs: resp.kvs().iter().map(kv_from).collect(),
        more: resp.more(),
        count: resp.count(),
        revision,
    }
}

pub(crate) fn delete_response(
    resp: &etcd_client::DeleteResponse,
    revision: Revision,
    prev_kv: bool,
) -> DeleteResponse {
    DeleteResponse {
        revision,
        deleted: resp.deleted(),
        prev_kvs: if prev_kv { resp.prev_kvs().iter().map(kv_from).collect() } else { Vec::new() },
    }
}
