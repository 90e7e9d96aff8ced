//! The one id grammar for swarms, tasks and blockers, shared by the server (it
//! refuses anything else at create) and the clients (they refuse it before
//! sending): 1 ..= 128 of ASCII letters, digits and `-_.:@`, and not `.` or
//! `..`. Such an id is a path segment without escaping trouble, an HTTP header
//! value, a shell word and a store key part, so an id that is accepted can be
//! used through every interface.

/// Longest id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The characters an id may use besides ASCII letters and digits.
pub const ID_PUNCTUATION: &str = "-_.:@";

/// Why a string is not an id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_BYTES`].
    #[error("is {0} bytes, more than {MAX_ID_BYTES}")]
    TooLong(usize),
    /// The id is `.` or `..` (a path segment that cannot name anything).
    #[error("must not be `.` or `..`")]
    Dots,
    /// The id holds a character outside the grammar.
    #[error("contains {0:?}: an id uses ASCII letters, digits and {ID_PUNCTUATION}")]
    Character(char),
}

/// Checks `value` against the id grammar.
pub fn check(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        Err(IdError::Empty)
    } else if value.len() > MAX_ID_BYTES {
        Err(IdError::TooLong(value.len()))
    } else if value == "." || value == ".." {
        Err(IdError::Dots)
    } else if let Some(c) =
        value.chars().find(|c| !c.is_ascii_alphanumeric() && !ID_PUNCTUATION.contains(*c))
    {
        Err(IdError::Character(c))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        let longest = "x".repeat(MAX_ID_BYTES);
        for good in ["swarm-finance", "a", "t.1", "..a", "x:y@z_w", "A-z_0.9:x@y", &longest] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        let too_long = "x".repeat(MAX_ID_BYTES + 1);
        for (bad, why) in [
            ("", IdError::Empty),
            (".", IdError::Dots),
            ("..", IdError::Dots),
            ("a/b", IdError::Character('/')),
            ("a\nb", IdError::Character('\n')),
            ("a b", IdError::Character(' ')),
            ("é", IdError::Character('é')),
            ("задача-✓", IdError::Character('з')),
            ("a%2F", IdError::Character('%')),
            ("a?b", IdError::Character('?')),
            (too_long.as_str(), IdError::TooLong(MAX_ID_BYTES + 1)),
        ] {
            assert_eq!(check(bad), Err(why), "{bad:?}");
        }
    }
}
