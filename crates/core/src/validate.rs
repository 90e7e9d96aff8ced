//! Input checks: run before anything is written, so bad input changes nothing.

use crate::CoreError;

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// An id (swarm, task, blocker): non-empty, ≤ 256 bytes, no `/`, no control
/// characters.
pub fn id(field: &'static str, value: &str) -> Result<(), CoreError> {
    let reason = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_ID_BYTES {
        format!("is {} bytes, more than {MAX_ID_BYTES}", value.len())
    } else if value.contains('/') {
        "must not contain '/'".to_string()
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(CoreError::Invalid { field, reason })
}

/// A short free-form text (a task type): non-empty, ≤ 256 bytes, no control
/// characters.
pub fn text(field: &'static str, value: &str) -> Result<(), CoreError> {
    let reason = if value.trim().is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_ID_BYTES {
        format!("is {} bytes, more than {MAX_ID_BYTES}", value.len())
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
        assert!(id("swarm_id", "swarm-finance").is_ok());
        assert!(id("swarm_id", "").is_err());
        assert!(id("swarm_id", "a/b").is_err());
        assert!(id("swarm_id", "a\nb").is_err());
        assert!(id("swarm_id", &"x".repeat(257)).is_err());
        assert!(id("swarm_id", &"x".repeat(256)).is_ok());
    }
}
