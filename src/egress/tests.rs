//! The egress proxy's unit tests, with local servers.

#![expect(clippy::expect_used, reason = "test set-up: a failure to bind or connect is the test failing")]

use super::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

#[test]
fn targets_must_be_dns_names() {
    for bad in [".wild.test:80", "a..wild.test:80", "-.wild.test:80", "a-.test:80", "x.test.:80", "a b:80"] {
        assert_eq!(split_target(bad, 443), None, "{bad}");
    }
    assert_eq!(split_target("Api.Example-1.test:8080", 443), Some(("api.example-1.test".to_owned(), 8080)));
    assert_eq!(split_target("10.0.0.1", 443), Some(("10.0.0.1".to_owned(), 443)));
}

#[tokio::test]
async fn a_head_with_bare_line_feeds_is_refused_and_recorded() {
    let target = echo_server().await;
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let (answer, _) = ask(p, &format!("GET http://localhost:{target}/ HTTP/1.1\nHost: localhost\n\n")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let d = rx.recv().await.expect("decision");
    assert!(!d.allowed && d.why.contains("bare line feeds"), "{d:?}");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_at_once() {
    let target = echo_server().await;
    let (p, _rx) = proxy(format!("localhost:{target}")).await;
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(("127.0.0.1", p)).await.expect("connect"));
    }
    // Let the proxy accept them all, then one more: closed without an answer.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut b)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "{n:?}");
    drop(idle);
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
    let (target, mut seen) = keep_alive_server().await;
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
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
        let got = upstream_got(&mut seen).await;
        assert!(got.starts_with("GET / HTTP/1.1\r\n"), "{host}: {got}");
    }
    assert_eq!(received(&mut seen), "");
}

#[tokio::test]
async fn plain_http_goes_on_in_origin_form() {
    let (target, mut seen) = keep_alive_server().await;
    let (p, _rx) = proxy(format!("localhost:{target}")).await;
    let (answer, _) = ask(p, &format!("GET http://localhost:{target}/x?y=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The server records what it received: the request in origin form.
    let got = upstream_got(&mut seen).await;
    assert!(got.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{got}");
}

/// A server that keeps connections open, answers `ok` to every request head it gets, and
/// sends on every byte it received, per connection.
async fn keep_alive_server() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    upstream("127.0.0.1:0", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.expect("bind")
}

/// A server on `bind` that keeps connections open, answers `answer` to every request head it gets,
/// and sends on every byte it received; `None` when it cannot listen there.
async fn upstream(bind: &str, answer: &'static [u8]) -> Option<(u16, mpsc::UnboundedReceiver<Vec<u8>>)> {
    let l = TcpListener::bind(bind).await.ok()?;
    let port = l.local_addr().ok()?.port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (mut seen, mut answered) = (Vec::new(), 0);
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&b[..n]);
                    let _ = tx.send(b[..n].to_vec());
                    let heads = seen.windows(4).filter(|w| w == b"\r\n\r\n").count();
                    while answered < heads {
                        answered += 1;
                        if s.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    Some((port, rx))
}

/// What the server receives, once it has received something (within 5 s) and 100 ms more.
async fn upstream_got(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> String {
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.ok().flatten();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut all = first.unwrap_or_default();
    all.extend(received(rx).into_bytes());
    String::from_utf8_lossy(&all).into_owned()
}

/// Everything the server has received so far.
fn received(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> String {
    let mut all = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        all.extend(chunk);
    }
    String::from_utf8_lossy(&all).into_owned()
}

async fn next_decision(rx: &mut mpsc::Receiver<Decision>) -> Option<Decision> {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.ok().flatten()
}

/// Reads until the proxy closes the connection (or 5 s pass).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut all)).await;
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn a_pipelined_second_request_is_refused_recorded_and_never_forwarded() {
    let (target, mut seen) = keep_alive_server().await;
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let first = format!(
        "POST http://localhost:{target}/a HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
    );
    for second in [
        format!("GET http://localhost:{target}/b HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
        "GET http://evil.example/c HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_owned(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
        s.write_all(format!("{first}{second}").as_bytes()).await.expect("write");
        let answer = read_to_close(&mut s).await;
        assert_eq!(answer.matches("200 OK").count(), 1, "{answer}");
        let d = next_decision(&mut rx).await.expect("first decision");
        assert!(d.allowed, "{d:?}");
        // Each request is checked on its own: the second names another host, in its Host
        // header or its target.
        let d = next_decision(&mut rx).await.expect("a decision on the second request");
        assert!(!d.allowed && (d.why.contains("Host header") || d.why.contains("is not allowed")), "{d:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let got = received(&mut seen);
    assert_eq!(got.matches("HTTP/1.1\r\n").count(), 2, "{got}");
    assert!(got.contains("\r\n\r\nhello") && got.contains("Connection: close\r\n"), "{got}");
    assert!(
        !got.contains("evil") && !got.contains("keep-alive") && !got.contains(" /b ") && !got.contains(" /c "),
        "{got}"
    );
}

#[tokio::test]
async fn a_second_request_on_a_kept_alive_connection_is_refused_recorded_and_never_forwarded() {
    let (target, mut seen) = keep_alive_server().await;
    let (proxy_port, mut rx) = proxy(format!("localhost:{target}")).await;
    let mut s = TcpStream::connect(("127.0.0.1", proxy_port)).await.expect("connect");
    let first = format!("GET http://localhost:{target}/a HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(first.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("ok"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    // The server keeps the connection open; the client asks again on it, for another host.
    let _ = s.write_all(b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n").await;
    let d = next_decision(&mut rx).await.expect("a decision on the second request");
    assert!(!d.allowed && d.host == "evil.example" && d.why.contains("is not allowed"), "{d:?}");
    let rest = read_to_close(&mut s).await;
    assert!(!rest.contains("200"), "{rest}");
    let got = received(&mut seen);
    assert_eq!(got.matches("HTTP/1.1\r\n").count(), 1, "{got}");
    assert!(!got.contains("evil"), "{got}");
}

#[tokio::test]
async fn requests_it_cannot_frame_are_refused_and_recorded() {
    let (target, mut seen) = keep_alive_server().await;
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let url = format!("http://localhost:{target}/");
    for (req, status) in [
        (format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "501"),
        (format!("POST {url} HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello"), "501"),
        (format!("POST {url} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), "400"),
        (format!("POST {url} HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"), "400"),
        (format!("GET {url} HTTP/1.1\r\nX: a\rHost: evil.example\r\n\r\n"), "400"),
        (format!("GET {url} HTTP/1.1\r\nX: a\r\n Host: evil.example\r\n\r\n"), "400"),
        (format!("GET {url} HTTP/1.1\r\nHost : evil.example\r\n\r\n"), "400"),
        (format!("GET {url} HTTP/1.1 extra\r\n\r\n"), "400"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{req:?} -> {answer}");
        let d = next_decision(&mut rx).await.expect("decision");
        assert!(!d.allowed, "{req:?}: {d:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(received(&mut seen), "");
}

#[tokio::test]
async fn the_upstream_gets_the_targets_host_header() {
    let (target, mut seen) = keep_alive_server().await;
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    s.write_all(format!("GET http://localhost:{target}/ HTTP/1.0\r\n\r\n").as_bytes()).await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.ends_with("ok"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    let got = received(&mut seen);
    assert!(
        got.starts_with("GET / HTTP/1.0\r\n") && got.contains(&format!("\r\nHost: localhost:{target}\r\n")),
        "{got}"
    );
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

mod attacks;
