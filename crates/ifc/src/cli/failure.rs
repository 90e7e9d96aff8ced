//! Why a command failed, for people: the cause, the next step, and the exit
//! code from the one table ([`EXIT_CODES`], shown in `ifc --help`).

use ifc_client::{ClientError, ErrorCode};

/// The exit-code table, as `ifc --help` prints it.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  unexpected: a server bug or an answer the CLI cannot read
  2  usage: a bad flag, argument or value; nothing changed
  3  not found: no such task, swarm or blocker (or that history is no longer kept)
  4  refused: the current state forbids it (claimed elsewhere, stale claim token,
     finished task, swarm limit reached, tampering found by `witness verify`)
  5  not allowed: a missing, wrong or insufficient token
  6  unavailable: cannot connect, or the server or its store is unavailable,
     overloaded or timed out; retrying later may work";

/// The exit codes of [`EXIT_CODES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Unexpected = 1,
    Usage = 2,
    NotFound = 3,
    Refused = 4,
    NotAllowed = 5,
    Unavailable = 6,
}

/// A failure the CLI finds itself (before or instead of asking the server).
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Failure { exit, message: message.into(), hint: hint.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Whom the command spoke to the server as, for hints about a refused token.
#[derive(Clone, Debug)]
pub enum Role {
    /// The admin token, from a flag or the environment (`None`) or this file.
    Admin(Option<std::path::PathBuf>),
    /// A swarm's token.
    Swarm(String),
}

/// What went wrong, the next step, and the exit code.
pub fn explain(e: &anyhow::Error, server: &str, role: Option<&Role>) -> Failure {
    if let Some(failure) = e.downcast_ref::<Failure>() {
        return Failure::new(failure.exit, format!("{e:#}"), failure.hint.clone());
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, error }) => {
            let code = wire_name(error.code);
            // The server cannot tell which token was meant; the CLI can.
            let message = match (error.code, role) {
                (ErrorCode::Unauthorized, Some(Role::Admin(_))) => {
                    "the server refused the admin token".to_string()
                }
                (ErrorCode::Unauthorized, Some(Role::Swarm(swarm))) => {
                    format!("the server refused swarm {swarm}'s token")
                }
                _ => error.message.clone(),
            };
            Failure::new(
                exit_for(*status, error.code),
                format!("{message} [{code}, HTTP {status}]"),
                hint(error.code, *status, role),
            )
        }
        Some(ClientError::Transport(cause)) => cannot_connect(server, cause),
        // An id outside the grammar, refused by the client before sending.
        Some(ClientError::InvalidId { .. }) => Failure::new(
            Exit::Usage,
            format!("{e:#}"),
            "ids are 1 to 128 of A-Z a-z 0-9 - _ . : @ (not `.` or `..`)",
        ),
        Some(ClientError::Decode(cause)) => Failure::new(
            Exit::Unexpected,
            format!("unexpected answer from {server}: {cause}"),
            "is --server / IFC_SERVER an IF.coordinator of the same version as this CLI?",
        ),
        _ => Failure::new(Exit::Unexpected, format!("{e:#}"), ""),
    }
}

/// The server could not be reached: refused (nothing listens), or another cause.
pub fn cannot_connect(server: &str, cause: &str) -> Failure {
    if cause.to_ascii_lowercase().contains("connection refused") {
        Failure::new(
            Exit::Unavailable,
            format!("connection refused to {server}: is `ifc serve` running?"),
            "start it with `ifc serve` (it listens on 127.0.0.1:7400), \
             or point --server / IFC_SERVER at the running server",
        )
    } else {
        Failure::new(
            Exit::Unavailable,
            format!("cannot reach {server}: {cause}"),
            "check --server / IFC_SERVER (and --ca-cert for an https server with a private certificate)",
        )
    }
}

/// The code's stable wire name (`not_claimed`), as the API and JSON show it.
pub fn wire_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// The exit code of a server error: by HTTP status, so codes added later map too.
pub fn exit_for(status: u16, code: ErrorCode) -> Exit {
    match status {
        400 | 413 | 415 | 422 => Exit::Usage,
        401 | 403 => Exit::NotAllowed,
        404 | 410 => Exit::NotFound,
        409 => Exit::Refused,
        429 if code == ErrorCode::TooManySwarms => Exit::Refused,
        408 | 429 | 502..=504 => Exit::Unavailable,
        _ => Exit::Unexpected,
    }
}

/// One line: what to do next about a server error.
fn hint(code: ErrorCode, status: u16, role: Option<&Role>) -> String {
    let claim_again = "if it is ready, claim it again: eval \"$(ifc task claim <task>)\" \
                       (`ifc task get <task>` shows its state)";
    let text = match code {
        ErrorCode::InvalidArgument | ErrorCode::MalformedJson | ErrorCode::InvalidBody => {
            "fix the value the message names; `--help` on the command shows the expected form"
        }
        ErrorCode::Unauthorized => return unauthorized(role),
        ErrorCode::Forbidden => {
            "this needs another role: admin commands need the admin token (--token / IFC_TOKEN); \
             swarm commands need that swarm's --swarm and --swarm-token"
        }
        ErrorCode::Incapable => {
            "the swarm lacks a capability the task needs (`ifc task get <task>` lists them): \
             register a swarm with a --cap for each"
        }
        ErrorCode::NotFound | ErrorCode::MethodNotAllowed => {
            "the server has no such call: is --server an IF.coordinator of this CLI's version?"
        }
        ErrorCode::TaskNotFound => {
            "`ifc task list --state <state>` lists tasks; ids are case-sensitive"
        }
        ErrorCode::BlockerNotFound => "`ifc blocker list` lists blockers",
        ErrorCode::SwarmNotRegistered => {
            "register it with eval \"$(ifc swarm register <swarm>)\"; `ifc swarm list` lists live \
             swarms (one that stops heartbeating lapses after its TTL)"
        }
        ErrorCode::Compacted => {
            "that revision is no longer kept: start again with --after 0 (the oldest kept) \
             or without --after (from now)"
        }
        ErrorCode::Conflict => "the state changed meanwhile: `ifc task get <task>` shows it",
        ErrorCode::Contended => "other writers won the race and nothing changed: run it again",
        ErrorCode::SwarmTaken => {
            "this swarm id is registered with another token: choose another id, or unregister \
             the old one (or wait for its TTL)"
        }
        ErrorCode::TaskExists => {
            "a task with this id exists with different content: choose another id \
             (`ifc task get <task>` shows the existing one)"
        }
        ErrorCode::TaskFinished => {
            "the task is completed, dead or cancelled; a dead one can be retried by the admin \
             with `ifc task retry <task>`"
        }
        ErrorCode::TaskClaimed => "a swarm holds the task now: push it after it is released",
        ErrorCode::AlreadyAcknowledged => {
            "the swarm holds it already: complete or fail it with the same --claim-token"
        }
        ErrorCode::BlockerResolved => {
            "the blocker is resolved already; `ifc blocker list --open` lists open ones"
        }
        ErrorCode::Fenced | ErrorCode::ClaimLapsed | ErrorCode::ClaimReplaced => claim_again,
        ErrorCode::NotOwner => "another swarm holds this task: `ifc task owner <task>` names it",
        ErrorCode::NotClaimed => {
            "this --claim-token holds no claim on the task: use the one `ifc task claim` printed \
             (IFC_CLAIM_TOKEN), or claim the task again if it is ready"
        }
        ErrorCode::NotDead => {
            "only a dead task can be retried: `ifc task get <task>` shows its state"
        }
        ErrorCode::PayloadTooLarge => {
            "the body is over the server's limit: send less --meta / --result"
        }
        ErrorCode::UnsupportedMediaType => {
            "the server wants JSON: use a CLI of the server's version"
        }
        ErrorCode::StoreLimit => {
            "the request passes a store limit the message names: make it smaller"
        }
        ErrorCode::TooManySwarms => {
            "the server's --max-swarms is reached: unregister swarms that are done, or raise it"
        }
        ErrorCode::Unavailable => {
            "the store is unreachable and nothing changed: retry shortly (the `ifc serve` log says why)"
        }
        ErrorCode::OutcomeUnknown => {
            "the write may or may not have happened: read the state (e.g. `ifc task get <task>`) \
             before retrying"
        }
        ErrorCode::Internal => {
            "a server bug: the `ifc serve` log has the details; please report it"
        }
        _ => match status {
            408 => "the server timed the request out: retry",
            429 => "the server is limiting this client: retry after a moment",
            503 => "the server is overloaded or stopping: retry after a moment",
            _ => "",
        },
    };
    text.to_string()
}

/// A refused token: which one, and where the right one is.
fn unauthorized(role: Option<&Role>) -> String {
    match role {
        Some(Role::Swarm(swarm)) => format!(
            "the server does not know swarm {swarm}'s token (wrong --swarm-token / IFC_SWARM_TOKEN, \
             or its registration lapsed): register again with eval \"$(ifc swarm register {swarm})\""
        ),
        Some(Role::Admin(Some(file))) => format!(
            "the admin token in {} is not this server's: give the server's --data-dir, \
             or its token with --token / IFC_TOKEN",
            file.display()
        ),
        _ => "the admin token (--token / IFC_TOKEN) is not this server's: use the one `ifc serve` \
              wrote to <data-dir>/admin.token (or gave as --admin-token); a swarm token needs \
              --swarm with it"
            .to_string(),
    }
}
