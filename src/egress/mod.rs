//! The egress proxy: an HTTP proxy (CONNECT for HTTPS, absolute-form requests for plain HTTP)
//! that admits only the host names and ports a stage's allow-list names, and reports every
//! connection it allows or refuses. Targets are matched by name as the client asked for them;
//! an IP address is only admitted when the allow-list names that address.
//!
//! The Docker executor runs it in a container of its own (`lightsout egress-proxy`), on the
//! stage's internal network and on the egress network; see `egress.rs`.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
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
            () = handle(stream, gate, decisions) => {}
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
    let port_of = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
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

/// A plain-HTTP request the proxy can frame: where it goes, the head to send there and the
/// length of its body.
#[derive(Debug)]
struct Framed {
    host: String,
    port: u16,
    head: String,
    body: u64,
}

/// A request refused before any byte of it goes upstream: what is recorded and the status
/// the client gets.
#[derive(Debug)]
struct Unframed {
    host: String,
    port: u16,
    status: &'static str,
    why: String,
}

/// Headers for the hop between the client and the proxy, never forwarded (the proxy writes
/// its own `Host` and `Connection`).
const HOP_BY_HOP: [&str; 9] = [
    "host",
    "connection",
    "proxy-connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Reads a plain-HTTP proxy request head (`head`, without its closing blank line) strictly:
/// one request line of three words, header lines `name: value` with no line break, NUL or
/// folding inside them, a body framed by one `Content-Length` or none. What another parser
/// could read differently is refused, so that the request checked is the request sent.
fn frame(head: &str) -> Result<Framed, Unframed> {
    let refuse = |host: &str, port: u16, status, why: &str| Unframed {
        host: host.to_owned(),
        port,
        status,
        why: why.to_owned(),
    };
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let asked: String = request.chars().take(120).collect();
    let not_proxy = || refuse(&asked, 0, "400 Bad Request", "not a proxy request for a host name and port");
    let words: Vec<&str> = request.split(' ').collect();
    let [method, target, version] = words[..] else { return Err(not_proxy()) };
    let token =
        |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token(method) || !matches!(version, "HTTP/1.0" | "HTTP/1.1") || request.contains(|c: char| c.is_control()) {
        return Err(not_proxy());
    }
    let Some(after) = target.strip_prefix("http://") else { return Err(not_proxy()) };
    let (authority, path) = after.split_once('/').map_or((after, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let Some((host, port)) = split_target(authority, 80) else { return Err(not_proxy()) };
    let unreadable = |why: &str| refuse(&host, port, "400 Bad Request", why);
    let (mut length, mut kept, mut named) = (None::<u64>, Vec::new(), Vec::new());
    for line in lines {
        if line.contains(|c: char| c.is_control() && c != '\t') {
            return Err(unreadable("a header line holds a control character"));
        }
        let Some((name, value)) = line.split_once(':').filter(|(n, _)| token(n)) else {
            return Err(unreadable("a header line is not `name: value`"));
        };
        let (lower, value) = (name.to_ascii_lowercase(), value.trim_matches([' ', '\t']));
        match lower.as_str() {
            "host" if split_target(value, port).map(|(h, _)| h).as_deref() != Some(host.as_str()) => {
                let named: String = value.chars().take(80).collect();
                return Err(refuse(
                    &host,
                    port,
                    "403 Forbidden",
                    &format!("its Host header names another host ({named})"),
                ));
            }
            "transfer-encoding" => {
                return Err(refuse(
                    &host,
                    port,
                    "501 Not Implemented",
                    "a request body in Transfer-Encoding cannot be framed by the proxy; send Content-Length",
                ));
            }
            "content-length" => {
                let n = value.parse::<u64>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
                match (n, length) {
                    (None, _) => return Err(unreadable("its Content-Length is not a number")),
                    (Some(n), Some(before)) if n != before => {
                        return Err(unreadable("it has two different Content-Length headers"));
                    }
                    (Some(n), _) => length = Some(n),
                }
            }
            "connection" | "proxy-connection" => {
                named.extend(value.split(',').map(|t| t.trim().to_ascii_lowercase()));
            }
            _ => {}
        }
        kept.push((lower, line));
    }
    let authority = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let authority = if port == 80 { authority } else { format!("{authority}:{port}") };
    let mut out = format!("{method} {path} {version}\r\nHost: {authority}\r\n");
    for (lower, line) in kept {
        if !HOP_BY_HOP.contains(&lower.as_str()) && !named.contains(&lower) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // One request per connection: the upstream closes after its answer, and nothing else the
    // client sends on this connection goes anywhere.
    out.push_str("Connection: close\r\n\r\n");
    Ok(Framed { host, port, head: out, body: length.unwrap_or(0) })
}

/// Why a second request on one connection is refused.
const ONE_PER_CONNECTION: &str =
    "a further request on the same connection; the proxy forwards one request per connection";
/// How long the proxy goes on, once either side is done (the answer relayed, or a further
/// request refused), for the other: a further request to record, the rest of the answer.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for bytes the client sends after its request (blank lines aside) and returns them,
/// up to the end of their first line; `None` when the client sends nothing more.
async fn further<R: AsyncRead + Unpin>(client: &mut R, mut seen: Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1024];
    loop {
        let start = seen.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(seen.len());
        seen.drain(..start);
        if seen.contains(&b'\n') || seen.len() >= 1024 {
            return Some(seen);
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return (!seen.is_empty()).then_some(seen),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// The decision recorded for a further request: its target when it names one.
fn refused_further(bytes: &[u8]) -> Decision {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let named = if method.eq_ignore_ascii_case("CONNECT") {
        split_target(target, 443)
    } else {
        target.strip_prefix("http://").and_then(|a| split_target(a.split('/').next().unwrap_or_default(), 80))
    };
    let (host, port) = named.unwrap_or_else(|| (line.chars().take(120).collect(), 0));
    Decision { host, port, allowed: false, why: ONE_PER_CONNECTION.to_owned() }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, gate: Gate, decisions: mpsc::Sender<Decision>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let refuse = |why: &str| Decision { host: "(no request)".to_owned(), port: 0, allowed: false, why: why.to_owned() };
    let read_head = async {
        loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            if head.windows(2).any(|w| w == b"\n\n") {
                return Err((
                    &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..],
                    Some("a request head with bare line feeds (not CRLF)"),
                ));
            }
            if head.len() > MAX_HEAD {
                return Err((
                    &b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n"[..],
                    Some("a request head over 16 KiB"),
                ));
            }
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return Err((&b""[..], None)),
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    let end = match tokio::time::timeout(HEAD_TIMEOUT, read_head).await {
        Ok(Ok(end)) => end,
        Ok(Err((answer, why))) => {
            if let Some(why) = why {
                let _ = decisions.send(refuse(why)).await;
            }
            let _ = client.write_all(answer).await;
            return;
        }
        Err(_) => {
            let _ = decisions.send(refuse("no complete request head within 30 s")).await;
            let _ = client.write_all(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n").await;
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end - 4]).into_owned();
    let rest = head[end..].to_vec();
    let mut first = text.split("\r\n").next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_target(target, 443) else {
            let asked: String = format!("{method} {target}").chars().take(120).collect();
            let why = "not a proxy request for a host name and port".to_owned();
            let _ = decisions.send(Decision { host: asked, port: 0, allowed: false, why }).await;
            let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            return;
        };
        tunnel(client, &host, port, &rest, &gate, &decisions).await;
        return;
    }
    match frame(&text) {
        Ok(framed) => forward_one(client, framed, rest, &gate, &decisions).await,
        Err(u) => {
            let _ = decisions.send(Decision { host: u.host, port: u.port, allowed: false, why: u.why }).await;
            let answer = format!("HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", u.status);
            let _ = client.write_all(answer.as_bytes()).await;
        }
    }
}

/// Asks the gate, records its decision and reaches the target: `None` when refused or
/// unreachable (the client has its answer then).
async fn admit<S: AsyncWrite + Unpin>(
    client: &mut S,
    host: &str,
    port: u16,
    gate: &Gate,
    decisions: &mpsc::Sender<Decision>,
) -> Option<TcpStream> {
    let verdict = gate(host, port);
    let decision =
        Decision { host: host.to_owned(), port, allowed: verdict.is_ok(), why: verdict.clone().unwrap_or_else(|e| e) };
    let _ = decisions.send(decision).await;
    if verdict.is_err() {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
        return None;
    }
    if let Ok(Ok(upstream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Some(upstream)
    } else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        None
    }
}

/// `CONNECT`: an opaque tunnel to an admitted target (what goes through it is not inspected).
async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    host: &str,
    port: u16,
    rest: &[u8],
    gate: &Gate,
    decisions: &mpsc::Sender<Decision>,
) {
    let Some(mut upstream) = admit(&mut client, host, port, gate, decisions).await else { return };
    if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_err() {
        return;
    }
    if !rest.is_empty() && upstream.write_all(rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Plain HTTP: sends the one checked request (its head rewritten, exactly its body) and relays
/// the answer. Anything more the client sends is never forwarded: it is recorded as refused,
/// and the connection ends.
async fn forward_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    framed: Framed,
    rest: Vec<u8>,
    gate: &Gate,
    decisions: &mpsc::Sender<Decision>,
) {
    let Some(upstream) = admit(&mut client, &framed.host, framed.port, gate, decisions).await else { return };
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let (mut from_upstream, mut to_upstream) = upstream.into_split();
    let early = usize::try_from(framed.body).unwrap_or(usize::MAX).min(rest.len());
    let (body_start, extra) = rest.split_at(early);
    let extra = extra.to_vec();
    let send = async {
        let sent = async {
            to_upstream.write_all(framed.head.as_bytes()).await?;
            to_upstream.write_all(body_start).await?;
            let left = framed.body - early as u64;
            let copied = tokio::io::copy(&mut (&mut from_client).take(left), &mut to_upstream).await?;
            if copied == left { Ok(()) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) }
        };
        let sent: std::io::Result<()> = sent.await;
        match sent {
            Ok(()) => match further(&mut from_client, extra).await {
                Some(bytes) => {
                    let _ = decisions.send(refused_further(&bytes)).await;
                }
                None => std::future::pending().await,
            },
            // The client went away before its body ended; the answer, if any, still goes back.
            Err(_) => std::future::pending().await,
        }
    };
    let relay = async {
        let _ = tokio::io::copy(&mut from_upstream, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(send, relay);
    tokio::select! {
        () = &mut relay => { let _ = tokio::time::timeout(LINGER, &mut send).await; }
        () = &mut send => { let _ = tokio::time::timeout(LINGER, &mut relay).await; }
    }
}

#[cfg(test)]
mod tests;
