//! `ifc`: the IF.coordinator binary — the service (`ifc serve`), the CLI that
//! talks to it, and store tools for debugging (`ifc kv`, `ifc store`).

mod cli;
mod serve;
mod store;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ifc",
    version,
    about = "IF.coordinator: coordination for fleets of agent swarms",
    long_about = "IF.coordinator: swarms register with capabilities, claim tasks atomically, \
                  complete or fail them; every change is witnessed in a tamper-evident log.\n\n\
                  Start a server with `ifc serve`, then drive it with the other commands.",
    after_help = cli::EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the local data lives (the embedded store and the admin token).
#[derive(clap::Args, Clone, Debug)]
pub struct DataDir {
    /// Data directory: the embedded store and the generated admin token.
    #[arg(long, env = "IFC_DATA_DIR", default_value = "./ifc-data", global = true)]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the coordinator service.
    ///
    /// Example: `ifc serve` (embedded store in ./ifc-data, listening on 127.0.0.1:7400)
    Serve(serve::ServeArgs),
    /// Tasks: create, claim, complete, fail, inspect.
    Task(cli::TaskCommand),
    /// Swarms: register, list, stats, heartbeat, unregister.
    Swarm(cli::SwarmCommand),
    /// The witness log: list, export, verify.
    Witness(cli::WitnessCommand),
    /// Pushes a task straight to one swarm's inbox (admin).
    ///
    /// Example: `ifc push swarm-finance urgent-review --type code-review`
    Push(cli::PushCommand),
    /// Pushed tasks: follow this swarm's inbox, ack, decline.
    Inbox(cli::InboxCommand),
    /// Blockers: raise, list, assign a helper, resolve, follow.
    Blocker(cli::BlockerCommand),
    /// Queue depth: tasks by state and ready tasks by capability set (admin).
    ///
    /// Example: `ifc queues` (like `celery inspect`), `ifc queues -o json`
    Queues(cli::QueuesCommand),
    /// Runs a command for every task a swarm takes: any program becomes a swarm.
    ///
    /// Example: `ifc worker swarm-1 --cap code-analysis:python --concurrency 4 -- ./review.sh`
    Worker(cli::WorkerCommand),
    /// Follows the coordination event stream (admin).
    ///
    /// Example: `ifc events --follow --after 120 -o json`
    Events(cli::EventsCommand),
    /// Opens the store directly and reports it (not while a server holds it).
    ///
    /// Example: `ifc store --data-dir ./ifc-data`
    Store(store::StoreArgs),
    /// Raw key-value access to the store, for debugging.
    ///
    /// Example: `ifc kv get ifc/ --prefix`
    Kv(store::KvArgs),
    /// Prints a shell completion script.
    ///
    /// Example: `ifc completions bash > /etc/bash_completion.d/ifc`, or
    /// `source <(ifc completions zsh)`
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Writes man pages: ifc.1 and one per command (ifc-task-claim.1, …).
    ///
    /// Example: `ifc man /usr/local/share/man/man1`, then `man ifc-task-claim`
    Man {
        /// The directory to write them to (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

/// Writes the man page of `command` and of each subcommand below it, named
/// `ifc-task-claim.1` as git names its own.
fn write_man_pages(command: &clap::Command, name: &str, dir: &std::path::Path) -> Result<usize> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).title(name).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        written += write_man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(written)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map(|()| 0),
            Command::Task(command) => cli::task(command).await,
            Command::Swarm(command) => cli::swarm(command).await,
            Command::Witness(command) => cli::witness(command).await,
            Command::Push(command) => cli::push(command).await,
            Command::Inbox(command) => cli::inbox(command).await,
            Command::Blocker(command) => cli::blocker(command).await,
            Command::Events(command) => cli::events(command).await,
            Command::Queues(command) => cli::queues(command).await,
            Command::Worker(command) => cli::worker(command).await,
            Command::Store(args) => store::status(args).await.map(|()| 0),
            Command::Kv(args) => store::kv(args).await.map(|()| 0),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "ifc", &mut std::io::stdout());
                Ok(0)
            }
            Command::Man { dir } => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let written = write_man_pages(&Cli::command(), "ifc", &dir)?;
                eprintln!("wrote {written} man pages to {}", dir.display());
                Ok(0)
            }
        }
    })?;
    std::process::exit(code);
}
