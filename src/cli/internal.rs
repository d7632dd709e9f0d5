//! The hidden commands lightsout runs itself, inside sandboxes and containers: the egress proxy
//! (a container of its own), its forwarder (inside a local sandbox) and `sandbox-exec` (the
//! first process of a local sandbox started by root).

use std::path::PathBuf;

use super::Failure;
use super::exit::Exit;

#[derive(clap::Args, Debug)]
pub(super) struct EgressProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:3128")]
    pub(super) listen: String,
    /// Only answer clients from this IPv4 subnet (`a.b.c.d/n`).
    #[arg(long)]
    pub(super) clients: Option<String>,
    /// A host the stage may reach: `name` or `name:port` (443 when absent).
    #[arg(long)]
    pub(super) allow: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(super) struct EgressForwardArgs {
    /// Loopback address to listen on.
    #[arg(long)]
    pub(super) listen: String,
    /// The egress proxy's Unix socket.
    #[arg(long)]
    pub(super) to: PathBuf,
    /// The command to run.
    #[arg(last = true, required = true)]
    pub(super) command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(super) struct SandboxExecArgs {
    #[arg(long)]
    pub(super) uid: u32,
    #[arg(long)]
    pub(super) gid: u32,
    /// The command to run.
    #[arg(last = true, required = true)]
    pub(super) command: Vec<String>,
}

pub(super) fn sandbox_exec(a: &SandboxExecArgs) -> Result<Exit, Failure> {
    use std::os::unix::process::CommandExt as _;
    if a.uid == 0 || a.gid == 0 {
        return Err(Failure::Message("sandbox-exec never runs a command as root".into()));
    }
    let Some((program, args)) = a.command.split_first() else {
        return Err(Failure::Message("sandbox-exec: no command".into()));
    };
    // As root, std drops the supplementary groups, then sets the gid, then the uid; exec only
    // returns on failure.
    let e = std::process::Command::new(program).args(args).uid(a.uid).gid(a.gid).exec();
    Err(Failure::Message(format!("sandbox-exec: cannot run {program} as {}:{}: {e}", a.uid, a.gid)))
}

pub(super) fn egress_forward(a: &EgressForwardArgs) -> Result<Exit, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Io(format!("cannot start the async runtime: {e}")))?;
    let code = rt.block_on(crate::egress::forward(&a.listen, &a.to, &a.command)).map_err(Failure::Message)?;
    drop(rt);
    // The stage's own exit status, whatever it is: it is the stage's result.
    std::process::exit(code);
}

pub(super) fn egress_proxy(a: EgressProxyArgs) -> Result<Exit, Failure> {
    let clients =
        match &a.clients {
            Some(c) => Some(crate::egress::Subnet::parse(c).ok_or_else(|| {
                Failure::Message(format!("--clients `{c}` is not an IPv4 subnet such as 172.18.0.0/16"))
            })?),
            None => None,
        };
    let rt = tokio::runtime::Builder::new_current_thread()
        // Name lookups run on blocking threads; the proxy's container has a small pids limit.
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| Failure::Io(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(crate::egress::standalone(&a.listen, clients, a.allow)).map_err(Failure::Message)?;
    Ok(Exit::Ok)
}
