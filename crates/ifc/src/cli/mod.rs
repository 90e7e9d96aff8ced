//! The CLI commands that talk to a running server: one file per command noun,
//! each with its arguments, its run function and its named table renderers.
//!
//! Exit codes: 0 done; 1 other error; 2 bad usage; 3 not found; 4 refused
//! (conflict, fenced, not the owner, already claimed); 5 not allowed (auth);
//! 6 unavailable.

mod blocker;
mod events;
mod inbox;
mod output;
mod queues;
mod swarm;
mod task;
mod witness;
mod worker;

use anyhow::{Context, Result};
use ifc_client::Client;

pub use blocker::{BlockerCommand, blocker};
pub use events::{EventsCommand, events};
pub use inbox::{InboxCommand, PushCommand, inbox, push};
pub use queues::{QueuesCommand, queues};
pub use swarm::{SwarmCommand, swarm};
pub use task::{TaskCommand, task};
pub use witness::{WitnessCommand, witness};
pub use worker::{WorkerCommand, worker};

use crate::DataDir;
use crate::serve::ADMIN_TOKEN_FILE;
use output::Output;

/// How to reach the server, and as whom.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The server.
    #[arg(long, env = "IFC_SERVER", default_value = "http://127.0.0.1:7400", global = true)]
    server: String,
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
}

impl Connection {
    fn admin(&self) -> Result<Client> {
        let token = match &self.token {
            Some(token) => token.clone(),
            None => {
                let path = self.data.data_dir.join(ADMIN_TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!("no --token given and cannot read {}", path.display())
                    })?
                    .trim()
                    .to_string()
            }
        };
        self.client(&token)
    }

    fn client(&self, token: &str) -> Result<Client> {
        match &self.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading --ca-cert {}", path.display()))?;
                Ok(Client::with_ca(&self.server, token, &pem)?)
            }
            None => Ok(Client::new(&self.server, token)),
        }
    }

    fn swarm(&self) -> Result<Client> {
        let (Some(swarm), Some(token)) = (&self.swarm, &self.swarm_token) else {
            anyhow::bail!(
                "this command acts as a swarm: give --swarm and --swarm-token \
                 (IFC_SWARM, IFC_SWARM_TOKEN)"
            );
        };
        Ok(self.client("")?.as_swarm(swarm, token))
    }
}

/// Parses a JSON-valued flag (`--meta`, `--result`).
fn json_arg(name: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("--{name} is not JSON: {text}"))
}
