//! Command line (SPEC "Command line"), mapped onto Pingora's own options,
//! plus `stop`, `status` and `reload` for a running instance (`control`).

use clap::{Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(name = "aigate", version, about = "AI API gateway on Pingora")]
pub struct Cli {
    /// Config file (YAML). Without it the embedded default (conf/aigate.yaml) is used.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<String>,
    /// Validate the config and exit: 0 when valid, else every problem with its YAML path.
    #[arg(short = 't', long = "test")]
    pub test: bool,
    /// Take over the listening sockets of a running instance (Pingora graceful upgrade).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Act on the running instance (the pid in the config's `pid_file`) instead of starting one.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// SIGTERM: drain the requests in flight, then exit; waits until it has.
    Stop,
    /// Whether it runs: pid and uptime (exit 3 when not running).
    Status,
    /// SIGHUP: reload the config (or upgrade), and report whether it took.
    Reload,
    /// Read a password on stdin, print its bcrypt hash (for `admin.users`).
    AdminPassword,
}

impl Cli {
    pub fn pingora_opt(&self) -> pingora_core::server::configuration::Opt {
        pingora_core::server::configuration::Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            nocapture: false,
            test: false,
            conf: None,
        }
    }
}
