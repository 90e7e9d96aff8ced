//! Input checks: run before anything is written, so bad input changes nothing.

use crate::CoreError;

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The characters an id may use besides ASCII letters and digits.
pub const ID_PUNCTUATION: &str = "-_.:@";

/// An id (swarm, task, blocker): 1 ..= 128 of ASCII letters, digits and
/// `-_.:@`, and not `.` or `..`.
///
/// One grammar for every interface: such an id is a path segment without
/// escaping trouble, an HTTP header value, a shell word and a store key part,
/// so an id that is accepted can be used everywhere.
pub fn id(field: &'static str, value: &str) -> Result<(), CoreError> {
    let reason = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > MAX_ID_BYTES {
        format!("is {} bytes, more than {MAX_ID_BYTES}", value.len())
    } else if value == "." || value == ".." {
        "must not be `.` or `..`".to_string()
    } else if let Some(c) =
        value.chars().find(|c| !c.is_ascii_alphanumeric() && !ID_PUNCTUATION.contains(*c))
    {
        format!("contains {c:?}: an id uses ASCII letters, digits and {ID_PUNCTUATION}")
    } else {
        return Ok(());
    };
    Err(CoreError::Invalid { field, reason })
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
