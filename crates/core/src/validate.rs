//! Input checks: run before anything is written, so bad input changes nothing.

use crate::CoreError;

pub use ifc_api::ids::{ID_PUNCTUATION, MAX_ID_BYTES};

/// An id (swarm, task, blocker): the one grammar of [`ifc_api::ids::check`],
/// which the clients apply too, so an id accepted here works everywhere.
pub fn id(field: &'static str, value: &str) -> Result<(), CoreError> {
    ifc_api::ids::check(value).map_err(|e| CoreError::Invalid { field, reason: e.to_string() })
}

/// Longest short text (a task type), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// A short free-form text (a task type): non-empty, ≤ 256 bytes, no control
/// characters.
pub fn text(field: &'static str, value: &str) -> Result<(), CoreError> {
    let reason = if value.trim().is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_TEXT_BYTES {
        format!("is {} bytes, more than {MAX_TEXT_BYTES}", value.len())
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(CoreError::Invalid { field, reason })
}

/// Capabilities: each a non-empty string without control characters.
pub fn capabilities(field: &'static str, values: &[String]) -> Result<(), CoreError> {
    for value in values {
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(CoreError::Invalid {
                field,
                reason: format!("{value:?} is not a capability (empty or control characters)"),
            });
        }
    }
    Ok(())
}

/// A JSON document no larger than `max` bytes once encoded.
pub fn json(field: &'static str, value: &serde_json::Value, max: usize) -> Result<(), CoreError> {
    let len = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
    if len > max {
        return Err(CoreError::Invalid {
            field,
            reason: format!("is {len} bytes, more than {max}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["swarm-finance", "a", "t.1", "..a", "x:y@z_w", &"x".repeat(128)] {
            assert!(id("swarm_id", good).is_ok(), "{good}");
        }
        for bad in
            ["", ".", "..", "a/b", "a\nb", "a b", "é", "задача-✓", "a%2F", "a?b", &"x".repeat(129)]
        {
            assert!(id("swarm_id", bad).is_err(), "{bad:?}");
        }
    }
}
