//! The on-disk encoding of key metadata and watch history (see `docs/design.md`).
//!
//! Fixed-width little-endian integers; byte strings are a u32 length then bytes.
//! A stored key's value is `create_revision, mod_revision, version, lease` (4 × i64)
//! followed by the raw value. A history entry is the list of one revision's
//! events: `u32 count`, then per event `u8 kind` (0 put, 1 delete), the key, the
//! key state after (put only), and `u8 has_prev` with the state before.

use ifc_kv::{Event, EventKind, KeyValue};

const META_LEN: usize = 32;

/// Encodes a key's stored value (its metadata and value, not the key).
#[cfg(test)]
pub fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(kv));
    encode_kv_into(&mut out, kv);
    out
}

/// Appends a key's stored value to `out`.
pub fn encode_kv_into(out: &mut Vec<u8>, kv: &KeyValue) {
    put_meta(out, kv);
    out.extend_from_slice(&kv.value);
}

/// The length of a key's stored value.
pub fn stored_len(kv: &KeyValue) -> usize {
    META_LEN + kv.value.len()
}

fn put_meta(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
}

/// The stored bytes were not written by this codec: the file is damaged.
#[derive(Debug, thiserror::Error)]
#[error("corrupt record in the data file: {0}")]
pub struct Corrupt(&'static str);

/// Decodes a key's stored value.
pub fn decode_kv(key: &[u8], stored: &[u8]) -> Result<KeyValue, Corrupt> {
    let mut reader = Reader(stored);
    let kv = reader.kv(key.to_vec())?;
    Ok(KeyValue { value: reader.0.to_vec(), ..kv })
}

/// Encodes one revision's events.
pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for event in events {
        out.push(match event.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_bytes(&mut out, &event.kv.key);
        if event.kind == EventKind::Put {
            put_meta(&mut out, &event.kv);
            put_bytes(&mut out, &event.kv.value);
        }
        match &event.prev_kv {
            Some(prev) => {
                out.push(1);
                put_meta(&mut out, prev);
                put_bytes(&mut out, &prev.value);
            }
            None => out.push(0),
        }
    }
    out
}

/// Decodes one revision's events.
pub fn decode_events(revision: i64, bytes: &[u8]) -> Result<Vec<Event>, Corrupt> {
    let mut reader = Reader(bytes);
    let count = reader.u32()? as usize;
    let mut events = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let kind = match reader.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return Err(Corrupt("unknown event kind")),
        };
        let key = reader.bytes()?.to_vec();
        let kv = match kind {
            EventKind::Put => {
                let kv = reader.kv(key.clone())?;
                KeyValue { value: reader.bytes()?.to_vec(), ..kv }
            }
            EventKind::Delete => {
                KeyValue { key: key.clone(), mod_revision: revision, ..KeyValue::default() }
            }
        };
        let prev_kv = match reader.u8()? {
            0 => None,
            1 => {
                let prev = reader.kv(key)?;
                Some(KeyValue { value: reader.bytes()?.to_vec(), ..prev })
            }
            _ => return Err(Corrupt("bad prev flag")),
        };
        events.push(Event { kind, kv, prev_kv });
    }
    Ok(events)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Corrupt("u32"))?))
    }

    fn i64(&mut self) -> Result<i64, Corrupt> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Corrupt("i64"))?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn kv(&mut self, key: Vec<u8>) -> Result<KeyValue, Corrupt> {
        Ok(KeyValue {
            key,
            value: Vec::new(),
            create_revision: self.i64()?,
            mod_revision: self.i64()?,
            version: self.i64()?,
            lease: self.i64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 7,
        };
        let events = vec![
            Event { kind: EventKind::Put, kv: kv.clone(), prev_kv: Some(kv.clone()) },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue { key: b"k".to_vec(), mod_revision: 3, ..KeyValue::default() },
                prev_kv: None,
            },
        ];
        assert_eq!(decode_events(3, &encode_events(&events)).unwrap(), events);
        assert_eq!(decode_kv(b"k", &encode_kv(&kv)).unwrap(), kv);
        assert!(decode_events(3, &encode_events(&events)[..5]).is_err());
    }
}
