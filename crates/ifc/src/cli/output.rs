//! How a command's result reaches the terminal: a table for people or JSON for
//! scripts, and a failure as a message plus the exit code documented in `cli`.

use anyhow::Result;
use ifc_client::{ClientError, ErrorCode};
use serde::Serialize;

use super::Connection;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Output {
    Table,
    Json,
}

impl Connection {
    /// Prints `value` as pretty JSON, or as `table` renders it.
    pub(super) fn print<T: Serialize>(&self, value: &T, table: impl FnOnce(&T) -> String) {
        let text = match self.output {
            Output::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
            Output::Table => table(value),
        };
        print_out(&format!("{text}\n"));
    }
}

/// Writes to stdout. A reader that went away (`| head`) ends the command
/// quietly with 141, as a shell pipeline expects of SIGPIPE; `println!` would
/// panic instead.
pub(super) fn print_out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Maps a failure to the exit code documented in `cli`, printing it.
fn exit_code(e: &anyhow::Error) -> i32 {
    eprintln!("error: {e:#}");
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { error, .. }) => match error.code {
            ErrorCode::TaskNotFound | ErrorCode::SwarmNotRegistered | ErrorCode::NotFound => 3,
            ErrorCode::Conflict | ErrorCode::Fenced | ErrorCode::NotOwner => 4,
            ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::Incapable => 5,
            ErrorCode::Unavailable => 6,
            ErrorCode::InvalidArgument | ErrorCode::InvalidBody | ErrorCode::MalformedJson => 2,
            _ => 1,
        },
        Some(ClientError::Transport(_)) => 6,
        // An id outside the grammar, refused by the client before sending.
        Some(ClientError::InvalidId { .. }) => 2,
        _ => 1,
    }
}

/// A command's exit code: its own on success, the failure's mapped one otherwise.
pub(super) fn finish(result: Result<i32>) -> Result<i32> {
    Ok(result.unwrap_or_else(|e| exit_code(&e)))
}

/// `-` for an absent value in a table cell.
pub(super) fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// `value` as one shell word: as is if it is plainly safe, else single-quoted.
pub(super) fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:,@%+=/".contains(&b));
    if plain { value.to_string() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}
