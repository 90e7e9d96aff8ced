//! TLS for the channels to etcd (feature `tls`).

use ifc_kv::KvError;
use tonic::transport::Endpoint;

use crate::EtcdTls;

/// Applies the TLS settings, if any, to one endpoint.
#[cfg(feature = "tls")]
pub(crate) fn apply(endpoint: Endpoint, tls: Option<&EtcdTls>) -> Result<Endpoint, KvError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let Some(tls) = tls else { return Ok(endpoint) };
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca_pem {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &tls.identity_pem {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    endpoint
        .tls_config(config)
        .map_err(|e| KvError::InvalidArgument(format!("etcd TLS settings: {e}")))
}

/// Without the `tls` feature, asking for TLS is a configuration error.
#[cfg(not(feature = "tls"))]
pub(crate) fn apply(endpoint: Endpoint, tls: Option<&EtcdTls>) -> Result<Endpoint, KvError> {
    match tls {
        None => Ok(endpoint),
        Some(_) => {
            Err(KvError::InvalidArgument("this build has no TLS support (feature `tls`)".into()))
        }
    }
}
