//! JSON encoding of stored records, with decode failures reported as
//! [`CoreError::Corrupt`] naming the key.

use ifc_kv::KeyValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CoreError;

/// Encodes a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(value)
        .map_err(|e| CoreError::Corrupt { key: "<encoding>".into(), reason: e.to_string() })
}

/// Decodes a stored record.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, CoreError> {
    serde_json::from_slice(&kv.value).map_err(|e| CoreError::Corrupt {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        reason: e.to_string(),
    })
}
