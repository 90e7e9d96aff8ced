//! The CLI commands that talk to a running server: one file per command noun,
//! each with its arguments, its run function and its named table renderers.
//!
//! Exit codes: one table, `failure::EXIT_CODES`, printed by `ifc --help`.

mod blocker;
mod events;
mod failure;
mod inbox;
mod output;
mod queues;
mod stream;
mod swarm;
mod task;
mod task_batch;
mod time;
mod witness;
mod worker;

use std::sync::Mutex;

use anyhow::Result;
use ifc_client::Client;

pub use blocker::{BlockerCommand, blocker};
pub use events::{EventsCommand, events};
pub use failure::EXIT_CODES;
pub use inbox::{InboxCommand, PushCommand, inbox, push};
pub use queues::{QueuesCommand, queues};
pub use swarm::{SwarmCommand, swarm};
pub use task::{TaskCommand, task};
pub use witness::{WitnessCommand, witness};
pub use worker::{WorkerCommand, worker};

use crate::DataDir;
use crate::serve::ADMIN_TOKEN_FILE;
use failure::{Exit, Failure, Role};
use output::Output;

/// How to reach the server, and as whom.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The server.
    #[arg(long, env = "IFC_SERVER", default_value = "http://127.0.0.1:7400", global = true)]
    pub(super) server: String,
    /// Admin token (default: `<data-dir>/admin.token` of a local server).
    #[arg(long, env = "IFC_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Act as this swarm (with `--swarm-token`).
    #[arg(long, env = "IFC_SWARM", global = true)]
    swarm: Option<String>,
    /// The swarm's token, from `ifc swarm register`.
    #[arg(long, env = "IFC_SWARM_TOKEN", global = true, hide_env_values = true)]
    swarm_token: Option<String>,
    /// CA certificate (PEM) to trust for an https server with a private certificate.
    #[arg(long, env = "IFC_CA_CERT", global = true)]
    ca_cert: Option<std::path::PathBuf>,
    /// Output: `table` for people, `json` for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(flatten)]
    data: DataDir,
    /// Whom this command spoke as, for the hint when a token is refused.
    #[arg(skip)]
    role: Mutex<Option<Role>>,
}

impl Connection {
    fn admin(&self) -> Result<Client> {
        let (token, file) = match &self.token {
            Some(token) => (token.clone(), None),
            None => {
                let path = self.data.data_dir.join(ADMIN_TOKEN_FILE);
                let token = std::fs::read_to_string(&path).map_err(|e| {
                    Failure::new(
                        Exit::NotAllowed,
                        format!(
                            "no admin token: no --token given and cannot read {}: {e}",
                            path.display()
                        ),
                        "give --token / IFC_TOKEN, or --data-dir / IFC_DATA_DIR of the server \
                         (`ifc serve` writes admin.token there on first start)",
                    )
                })?;
                (token.trim().to_string(), Some(path))
            }
        };
        self.set_role(Role::Admin(file));
        self.client(&token)
    }

    fn set_role(&self, role: Role) {
        if let Ok(mut slot) = self.role.lock() {
            *slot = Some(role);
        }
    }

    fn client(&self, token: &str) -> Result<Client> {
        match &self.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Failure::new(
                        Exit::Usage,
                        format!("cannot read --ca-cert {}: {e}", path.display()),
                        "give the PEM file of the CA that signed the server's certificate",
                    )
                })?;
                Ok(Client::with_ca(&self.server, token, &pem)?)
            }
            None => Ok(Client::new(&self.server, token)),
        }
    }

    fn swarm(&self) -> Result<Client> {
        let (Some(swarm), Some(token)) = (&self.swarm, &self.swarm_token) else {
            return Err(Failure::new(
                Exit::Usage,
                "this command acts as a swarm: give --swarm and --swarm-token \
                 (IFC_SWARM, IFC_SWARM_TOKEN)",
                "register one and act as it in this shell: eval \"$(ifc swarm register <swarm>)\"",
            )
            .into());
        };
        self.set_role(Role::Swarm(swarm.clone()));
        Ok(self.client("")?.as_swarm(swarm, token))
    }
}

/// Parses a JSON-valued flag (`--meta`, `--result`).
fn json_arg(name: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("--{name} is not JSON ({e}): {text}"),
            format!("quote it for the shell, e.g. --{name} '{{\"key\": \"value\"}}'"),
        )
        .into()
    })
}
