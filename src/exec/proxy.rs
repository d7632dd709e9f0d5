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
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if clients.is_none_or(|c| c.contains(peer.ip())) => {
                    spawn_handler(stream, &gate, &decisions, &cancel);
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
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                spawn_handler(stream, &gate, &decisions, &cancel);
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
) {
    let (gate, decisions, cancel) = (Arc::clone(gate), decisions.clone(), cancel.clone());
    tokio::spawn(async move {
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
        let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if h.is_empty() || h.len() > 253 || !h.chars().all(name) {
            return None;
        }
        (h, port)
    };
    Some((host.to_ascii_lowercase(), port))
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(mut client: S, gate: Gate, decisions: mpsc::Sender<Decision>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > MAX_HEAD {
            let _ = client.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n").await;
            return;
        }
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let rest = head[end..].to_vec();
    let mut first = text.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());

    let (connect, host_port, forward_head) = if method.eq_ignore_ascii_case("CONNECT") {
        (true, split_target(&target, 443), None)
    } else if let Some(after) = target.strip_prefix("http://") {
        let (authority, path) = after.split_once('/').map_or((after, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        // The request goes on in origin form: `GET /path HTTP/1.1`, the other lines unchanged.
        let origin = text.replacen(&target, &path, 1);
        (false, split_target(authority, 80), Some(origin))
    } else {
        (false, None, None)
    };
    let Some((host, port)) = host_port else {
        // Refused too, and recorded: what was asked for, cut short, as data.
        let asked: String = format!("{method} {target}").chars().take(120).collect();
        let why = "not a proxy request for a host name and port".to_owned();
        let _ = decisions.send(Decision { host: asked, port: 0, allowed: false, why }).await;
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    // Plain HTTP: a `Host` header naming another host would reach another site on the same
    // server (virtual hosting); only the target itself may be named.
    let other_host = forward_head.as_deref().and_then(|h| {
        h.lines().skip(1).filter_map(|l| l.split_once(':')).find_map(|(k, v)| {
            let named = split_target(v.trim(), port).map(|(h, _)| h);
            (k.trim().eq_ignore_ascii_case("host") && named.as_deref() != Some(host.as_str()))
                .then(|| v.trim().to_owned())
        })
    });
    let verdict = match other_host {
        Some(named) => {
            Err(format!("its Host header names another host ({})", named.chars().take(80).collect::<String>()))
        }
        None => gate(&host, port),
    };
    let decision =
        Decision { host: host.clone(), port, allowed: verdict.is_ok(), why: verdict.clone().unwrap_or_else(|e| e) };
    let _ = decisions.send(decision).await;
    if verdict.is_err() {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").await;
        return;
    }
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
    let Ok(Ok(mut upstream)) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    if connect {
        if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_err() {
            return;
        }
    } else if let Some(h) = forward_head
        && upstream.write_all(h.as_bytes()).await.is_err()
    {
        return;
    }
    if !rest.is_empty() && upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test set-up: a failure to bind or connect is the test failing
mod tests {
    use super::*;

    async fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    async fn proxy(allowed: String) -> (u16, mpsc::Receiver<Decision>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = mpsc::channel(16);
        let gate: Gate = Arc::new(move |h: &str, p: u16| {
            if format!("{h}:{p}") == allowed {
                Ok(format!("allowed by `{allowed}`"))
            } else {
                Err(format!("{h}:{p} is not allowed"))
            }
        });
        tokio::spawn(serve(l, gate, None, tx, CancellationToken::new()));
        (port, rx)
    }

    async fn ask(proxy_port: u16, request: &str) -> (String, TcpStream) {
        let mut s = TcpStream::connect(("127.0.0.1", proxy_port)).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut b = vec![0u8; 256];
        let n = s.read(&mut b).await.expect("read");
        (String::from_utf8_lossy(&b[..n]).into_owned(), s)
    }

    #[tokio::test]
    async fn connect_to_an_allowed_host_tunnels() {
        let target = echo_server().await;
        let (p, mut rx) = proxy(format!("localhost:{target}")).await;
        let (answer, mut s) = ask(p, &format!("CONNECT localhost:{target} HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        s.write_all(b"ping").await.expect("write");
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.expect("echo");
        assert_eq!(&b, b"ping");
        let d = rx.recv().await.expect("decision");
        assert!(d.allowed && d.host == "localhost" && d.port == target);
    }

    #[tokio::test]
    async fn other_hosts_ports_and_bare_addresses_are_refused() {
        let target = echo_server().await;
        let (p, mut rx) = proxy(format!("localhost:{target}")).await;
        for req in [
            format!("CONNECT 127.0.0.1:{target} HTTP/1.1\r\n\r\n"),
            "CONNECT localhost:22 HTTP/1.1\r\n\r\n".to_owned(),
            "CONNECT evil.example:443 HTTP/1.1\r\n\r\n".to_owned(),
            format!("GET http://127.0.0.1:{target}/ HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ] {
            let (answer, _) = ask(p, &req).await;
            assert!(answer.starts_with("HTTP/1.1 403"), "{req:?} -> {answer}");
            let d = rx.recv().await.expect("decision");
            assert!(!d.allowed, "{d:?}");
        }
    }

    #[tokio::test]
    async fn a_host_header_naming_another_host_is_refused() {
        let target = echo_server().await;
        let (p, mut rx) = proxy(format!("localhost:{target}")).await;
        let req = format!("GET http://localhost:{target}/ HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        let (answer, _) = ask(p, &req).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        let d = rx.recv().await.expect("decision");
        assert!(!d.allowed && d.why.contains("Host header"), "{d:?}");
        // The target's own name, with or without its port, is fine.
        for host in ["localhost".to_owned(), format!("localhost:{target}"), "LOCALHOST".to_owned()] {
            let req = format!("GET http://localhost:{target}/ HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let (answer, _) = ask(p, &req).await;
            assert!(answer.starts_with("GET / HTTP/1.1"), "{host}: {answer}");
        }
    }

    #[tokio::test]
    async fn plain_http_goes_on_in_origin_form() {
        let target = echo_server().await;
        let (p, _rx) = proxy(format!("localhost:{target}")).await;
        let (answer, _) =
            ask(p, &format!("GET http://localhost:{target}/x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
        // The echo server returns what it received: the request in origin form.
        assert!(answer.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{answer}");
    }

    #[test]
    fn allow_lists_match_names_ports_and_wildcards() {
        let gate = allow_list(vec!["api.example.com".into(), "*.pkg.example:80".into()]);
        assert!(gate("api.example.com", 443).is_ok());
        assert!(gate("api.example.com", 80).is_err());
        assert!(gate("files.pkg.example", 80).is_ok());
        assert!(gate("pkg.example.evil", 80).is_err());
        assert!(gate("evil.example", 443).is_err());
        let gate = allow_list(vec!["[::1]:8080".into(), "[fd00::2]".into()]);
        assert!(gate("::1", 8080).is_ok() && gate("fd00::2", 443).is_ok());
        assert!(gate("::1", 443).is_err() && gate("fd00::3", 443).is_err());
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse("172.18.0.0/16").expect("subnet");
        assert!(s.contains("172.18.3.4".parse().expect("ip")));
        assert!(!s.contains("172.17.0.1".parse().expect("ip")));
        assert!(s.contains("::ffff:172.18.0.9".parse().expect("ip")));
        assert_eq!(Subnet::parse("172.18.0.0/33"), None);
        assert_eq!(Subnet::parse("nonsense"), None);
        let pool = Subnet::parse("10.213.0.0/16").expect("pool");
        assert_eq!(pool.blocks(28), 4096);
        assert_eq!(pool.block(28, 0).as_deref(), Some("10.213.0.0/28"));
        assert_eq!(pool.block(28, 4095).as_deref(), Some("10.213.255.240/28"));
        assert_eq!(pool.block(28, 4096), None);
        assert_eq!(Subnet::parse("10.0.0.0/30").expect("small").blocks(28), 0);
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("a.example:8443", 443), Some(("a.example".into(), 8443)));
        assert_eq!(split_target("A.Example", 443), Some(("a.example".into(), 443)));
        assert_eq!(split_target("[::1]:80", 443), Some(("::1".into(), 80)));
        assert_eq!(split_target("user@evil:80", 443), None);
        assert_eq!(split_target("x`![p](q)|y:443", 443), None);
        assert_eq!(split_target("a.example:0", 443), None);
        assert_eq!(split_target("a.example:80:80", 443), None);
        assert_eq!(split_target("[not-v6]:80", 443), None);
        assert_eq!(split_target("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(split_target("10.0.0.1:8080", 443), Some(("10.0.0.1".into(), 8080)));
    }
}
