//! How a command's result reaches the terminal: a table for people or JSON for
//! scripts (JSON lines on streams), and a failure as its cause, the next step
//! and the exit code from the table in `failure`.

use anyhow::Result;
use serde::Serialize;

use super::Connection;
use super::failure::{Failure, explain};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Output {
    Table,
    Json,
}

impl Connection {
    /// Prints one item of a stream: one JSON object per line, or as `line`
    /// renders it.
    pub(super) fn print_item<T: Serialize>(&self, value: &T, line: impl FnOnce(&T) -> String) {
        let text = match self.output {
            Output::Json => serde_json::to_string(value).unwrap_or_default(),
            Output::Table => line(value),
        };
        print_out(&format!("{text}\n"));
    }

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

/// A command's exit code: its own on success; on failure, the cause and the
/// next step on stderr and the code from the table in `failure`.
pub(super) fn finish(c: &Connection, result: Result<i32>) -> Result<i32> {
    Ok(result.unwrap_or_else(|e| {
        let role = c.role.lock().map(|role| role.clone()).unwrap_or_default();
        let failure = explain(&e, &c.server, role.as_ref());
        report(&failure);
        failure.exit as i32
    }))
}

/// Prints a failure as `error: …` and, if there is one, `hint: …`.
pub(super) fn report(failure: &Failure) {
    eprintln!("error: {}", failure.message);
    if !failure.hint.is_empty() {
        eprintln!("hint: {}", failure.hint);
    }
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
