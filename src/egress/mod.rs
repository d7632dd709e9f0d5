//! The egress proxy: an HTTP proxy (CONNECT for HTTPS, absolute-form requests for plain HTTP)
//! that admits only the host names and ports a stage's allow-list names, and reports every
//! connection it allows or refuses. Targets are matched by name as the client asked for them;
//! an IP address is only admitted when the allow-list names that address. hyper parses every
//! request on a connection, and each is decided on its own (`connection.rs`).
//!
//! The Docker executor runs it in a container of its own (`lightsout egress-proxy`), on the
//! stage's internal network and on the egress network; see `egress.rs`.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client has to send a whole request head (no slow-drip connection is held open).
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Connections one proxy serves at once; past that, new ones are closed at once (on the local
/// executor the proxy runs in the runner, whose file descriptors a stage must not exhaust).
const MAX_CONNECTIONS: usize = 256;
/// Longest the proxy waits to resolve and reach an allowed host.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One connection attempt and what the proxy decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub host: String,
    pub port: u16,
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub why: String,
}

/// Decides whether `host:port` may be reached: `Ok(rule)` or `Err(reason)`.
pub type Gate = Arc<dyn Fn(&str, u16) -> Result<String, String> + Send + Sync>;

/// The gate of an allow-list: each entry is `name` or `name:port` (443 when absent; an IPv6
/// address in brackets), and `*` in a name matches any run of characters.
pub fn allow_list(entries: Vec<String>) -> Gate {
    Arc::new(move |host: &str, port: u16| {
        for entry in &entries {
            let (name, p) = match entry.rsplit_once(':') {
                Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) => (n, p.parse().unwrap_or(0)),
                _ => (entry.as_str(), 443),
            };
            // An IPv6 literal is written in brackets (`[::1]:8080`); the target has none.
            let name = name.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            if p == port && crate::policy::wildcard(&name, host) {
                return Ok(format!("allowed by {entry}"));
            }
        }
        // The target is in the decision already; a reason without it has nothing a stage chose.
        Err("not on the stage's allow-list".to_owned())
    })
}

/// An IPv4 subnet, such as `172.18.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    base: u32,
    mask: u32,
}

impl Subnet {
    pub fn parse(text: &str) -> Option<Subnet> {
        let (addr, bits) = text.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        Some(Subnet { base: u32::from(addr) & mask, mask })
    }

    /// How many subnets of `prefix` bits this one holds (none when `prefix` is shorter).
    pub fn blocks(&self, prefix: u32) -> u32 {
        let bits = self.mask.count_ones();
        if prefix < bits || prefix > 32 { 0 } else { 1u32.checked_shl(prefix - bits).unwrap_or(u32::MAX) }
    }

    /// The `n`th subnet of `prefix` bits in this one, as `a.b.c.d/prefix`.
    pub fn block(&self, prefix: u32, n: u32) -> Option<String> {
        if n >= self.blocks(prefix) {
            return None;
        }
        let size = 1u32.checked_shl(32 - prefix).unwrap_or(0);
        let base = self.base.checked_add(n.checked_mul(size)?)?;
        Some(format!("{}/{prefix}", Ipv4Addr::from(base)))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => u32::from(v4) & self.mask == self.base,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

/// Serves until `cancel`; each decision goes to `decisions`. With `clients`, connections from
/// elsewhere are closed unanswered.
pub async fn serve(
    listener: TcpListener,
    gate: Gate,
    clients: Option<Subnet>,
    decisions: mpsc::Sender<Decision>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if clients.is_none_or(|c| c.contains(peer.ip())) => {
                    if let Ok(permit) = Arc::clone(&slots).try_acquire_owned() {
                        spawn_handler(stream, &gate, &decisions, &cancel, permit);
                    }
                }
                _ => {}
            },
        }
    }
}

/// Serves on a Unix socket until `cancel` (the local executor: the sandbox has no network, and
/// reaches the proxy through a socket file bound into it).
pub async fn serve_unix(
    listener: UnixListener,
    gate: Gate,
    decisions: mpsc::Sender<Decision>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => if let Ok((stream, _)) = accepted
                && let Ok(permit) = Arc::clone(&slots).try_acquire_owned()
            {
                spawn_handler(stream, &gate, &decisions, &cancel, permit);
            },
        }
    }
}

/// Handles one client in a task of its own, until it is done or `cancel`.
fn spawn_handler<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    gate: &Gate,
    decisions: &mpsc::Sender<Decision>,
    cancel: &CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (gate, decisions, cancel) = (Arc::clone(gate), decisions.clone(), cancel.clone());
    tokio::spawn(async move {
        let _held = permit;
        tokio::select! {
            () = cancel.cancelled() => {}
            () = connection::handle(stream, gate, decisions, &cancel) => {}
        }
    });
}

/// The environment that points a stage's HTTP clients at the proxy, in both spellings (tools
/// read one or the other), with nothing exempt.
pub fn proxy_env(url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .into_iter()
        .map(|k| (k.to_owned(), url.to_owned()))
        .collect();
    env.extend(["NO_PROXY", "no_proxy"].map(|k| (k.to_owned(), String::new())));
    env
}

/// Inside a local sandbox (`lightsout egress-forward`): listens on `listen` (loopback), carries
/// each connection to the proxy's Unix socket `to`, and runs `argv` meanwhile; returns its exit
/// status (128 + the signal when a signal ended it).
pub async fn forward(listen: &str, to: &std::path::Path, argv: &[String]) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt as _;
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let (program, rest) = argv.split_first().ok_or("no command to run")?;
    let mut child =
        tokio::process::Command::new(program).args(rest).spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
    let to = to.to_path_buf();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut proxy) = UnixStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut proxy).await;
                }
            });
        }
    });
    let status = child.wait().await.map_err(|e| format!("waiting for {program}: {e}"))?;
    Ok(status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1))
}

/// The proxy as a program of its own (`lightsout egress-proxy`): listens on `listen`, prints
/// `{"listening": address}` and then one JSON decision per line on stdout, until killed.
pub async fn standalone(listen: &str, clients: Option<Subnet>, allow: Vec<String>) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(serve(listener, allow_list(allow), clients, tx, CancellationToken::new()));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "listening": addr.to_string() })).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    while let Some(d) = rx.recv().await {
        let line = serde_json::to_string(&d).map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `host:port` split; the port defaults to `default`. The host is a DNS name (letters, digits,
/// `-`, `.`, `_`), an IPv4 address or a bracketed IPv6 one; anything else is not a target.
fn split_target(target: &str, default: u16) -> Option<(String, u16)> {
    // Digits only: `u16::from_str` also takes a leading `+`, which other parsers do not.
    let port_of =
        |p: &str| p.bytes().all(|b| b.is_ascii_digit()).then(|| p.parse::<u16>().ok()).flatten().filter(|p| *p != 0);
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        let port = if after.is_empty() { default } else { port_of(after.strip_prefix(':')?)? };
        (h, port)
    } else {
        let (h, port) = match target.split_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (target, default),
        };
        // A DNS name: labels of 1 to 63 letters, digits, `-` or `_`, none beginning or ending
        // with `-`; or an IPv4 address, which is such a name too.
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        };
        if h.is_empty() || h.len() > 253 || !h.split('.').all(label) {
            return None;
        }
        (h, port)
    };
    Some((host.to_ascii_lowercase(), port))
}

mod connection;
mod heads;
#[cfg(test)]
mod tests;
