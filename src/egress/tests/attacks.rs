//! Attacks of a hostile client on the egress proxy, each a test that fails if the attack works.
//! Each request is sent on a connection of its own unless the test is about what follows on one
//! connection; upstreams are servers of the test's own on loopback.

#![expect(clippy::expect_used, reason = "test set-up: a failure to bind or connect is the test failing")]

use super::*;

/// A proxy whose allow-list is `entry`, stopped by the token it returns.
async fn stoppable_proxy(entry: String) -> (u16, mpsc::Receiver<Decision>, CancellationToken) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    tokio::spawn(serve(l, allow_list(vec![entry]), None, tx, cancel.clone()));
    (port, rx, cancel)
}

/// Sends each request on a connection of its own; each must get `status`, be recorded as
/// refused, and reach no upstream.
async fn refused_with<R: AsRef<[u8]>>(
    p: u16,
    rx: &mut mpsc::Receiver<Decision>,
    seen: &mut Upstream,
    status: &str,
    requests: &[R],
) {
    for req in requests {
        let shown = String::from_utf8_lossy(req.as_ref());
        let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
        let _ = s.write_all(req.as_ref()).await;
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{shown:?} -> {answer}");
        let d = next_decision(rx).await.expect("decision");
        assert!(!d.allowed, "{shown:?}: {d:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(received(seen), "");
}

/// A kept-alive upstream and a proxy that admits it: the upstream's port and what it receives,
/// the proxy's port and its decisions.
async fn guarded() -> (u16, Upstream, u16, mpsc::Receiver<Decision>) {
    let (target, seen) = keep_alive_server().await;
    let (p, rx) = proxy(format!("localhost:{target}")).await;
    (target, seen, p, rx)
}

type Upstream = mpsc::UnboundedReceiver<Vec<u8>>;

#[tokio::test]
async fn every_request_on_a_connection_is_decided_on_its_own() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let url = format!("http://localhost:{target}");
    // Two allowed requests (the second with a body framed by two equal lengths), then one for
    // another host, pipelined.
    let all = format!(
        "GET {url}/a HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST {url}/b HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello\
         GET http://evil.example/c HTTP/1.1\r\nHost: evil.example\r\n\r\n\
         GET {url}/d HTTP/1.1\r\n\r\n"
    );
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    s.write_all(all.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(answer.ends_with("\r\n\r\n") && answer.contains("HTTP/1.1 403"), "{answer}");
    let mut decided = Vec::new();
    for _ in 0..3 {
        let d = next_decision(&mut rx).await.expect("decision");
        decided.push((format!("{}:{}", d.host, d.port), d.allowed));
    }
    let kept = format!("localhost:{target}");
    assert_eq!(decided, [(kept.clone(), true), (kept, true), ("evil.example:80".to_owned(), false)]);
    // Nothing after the refused request is read, let alone sent.
    assert!(next_decision_within(&mut rx, 300).await.is_none());
    let got = received(&mut seen);
    assert!(got.contains("GET /a HTTP/1.1\r\n") && got.contains("POST /b HTTP/1.1\r\n"), "{got}");
    assert_eq!(got.matches("Content-Length: 5").count(), 1, "{got}");
    assert!(got.contains("\r\n\r\nhello"), "{got}");
    assert!(!got.contains("evil") && !got.contains("/c ") && !got.contains("/d "), "{got}");
}

async fn next_decision_within(rx: &mut mpsc::Receiver<Decision>, ms: u64) -> Option<Decision> {
    tokio::time::timeout(std::time::Duration::from_millis(ms), rx.recv()).await.ok().flatten()
}

#[tokio::test]
async fn a_body_is_never_read_as_a_request() {
    let (target, mut seen, p, mut rx) = guarded().await;
    // The body holds a request for another host, and bare line feeds; the request after it is
    // read where the body ends.
    let inner = "GET http://evil.example/ HTTP/1.1\nHost: evil.example\n\n";
    let all = format!(
        "POST http://localhost:{target}/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{inner}GET http://localhost:{target}/b HTTP/1.1\r\n\r\n",
        inner.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    s.write_all(all.as_bytes()).await.expect("write");
    let mut answers = String::new();
    let mut b = [0u8; 1024];
    while answers.matches("ok").count() < 2 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await;
        let Ok(Ok(n @ 1..)) = n else { break };
        answers.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 2, "{answers}");
    for _ in 0..2 {
        let d = next_decision(&mut rx).await.expect("decision");
        assert!(d.allowed && d.host == "localhost", "{d:?}");
    }
    assert!(next_decision_within(&mut rx, 300).await.is_none());
    let got = received(&mut seen);
    assert!(got.contains(&format!("\r\n\r\n{inner}")) && got.contains("GET /b HTTP/1.1\r\n"), "{got}");
}

#[tokio::test]
async fn smuggling_framings_are_refused() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let url = format!("http://localhost:{target}/");
    let te_and_cl = format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n");
    refused_with(p, &mut rx, &mut seen, "501", &[te_and_cl]).await;
    let unreadable = [
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\nhello"),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST {url} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {url} HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"),
        format!("POST {url} HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        format!("POST {url} HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        format!("POST {url} HTTP/1.1\r\nContent-Length:\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nHost: localhost\nX: y\r\n\r\n"),
    ];
    refused_with(p, &mut rx, &mut seen, "400", &unreadable).await;
}

#[tokio::test]
async fn the_target_is_the_request_line_never_the_host_header() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let not_proxy = [
        format!("GET / HTTP/1.1\r\nHost: localhost:{target}\r\n\r\n"),
        format!("GET https://localhost:{target}/ HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("GET localhost:{target} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("OPTIONS * HTTP/1.1\r\nHost: localhost:{target}\r\n\r\n"),
        format!("CONNECT http://localhost:{target}/ HTTP/1.1\r\n\r\n"),
        format!("CONNECT / HTTP/1.1\r\nHost: localhost:{target}\r\n\r\n"),
    ];
    refused_with(p, &mut rx, &mut seen, "400", &not_proxy).await;
}

#[tokio::test]
async fn targets_that_are_not_a_plain_host_and_port_are_refused() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let t = target;
    let named = [
        // User information: which side is the host is a parser's choice.
        format!("GET http://localhost:{t}@evil.example/ HTTP/1.1\r\n\r\n"),
        format!("GET http://evil.example@localhost:{t}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://user:pw@localhost:{t}/ HTTP/1.1\r\n\r\n"),
        format!("CONNECT localhost:{t}@evil.example:443 HTTP/1.1\r\n\r\n"),
        // Percent-encoded, non-ASCII and not-quite names.
        format!("GET http://%6cocalhost:{t}/ HTTP/1.1\r\n\r\n"),
        format!("CONNECT %6cocalhost:{t} HTTP/1.1\r\n\r\n"),
        format!("GET http://l\u{f3}calhost:{t}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://localhost.:{t}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://localhost\u{3002}:{t}/ HTTP/1.1\r\n\r\n"),
        // Ports out of range, or not a number.
        "GET http://localhost:0/ HTTP/1.1\r\n\r\n".to_owned(),
        "GET http://localhost:65536/ HTTP/1.1\r\n\r\n".to_owned(),
        "GET http://localhost:99999999999999999999/ HTTP/1.1\r\n\r\n".to_owned(),
        format!("GET http://localhost:+{t}/ HTTP/1.1\r\n\r\n"),
        "GET http://localhost:/ HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT localhost:0 HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT localhost:65536 HTTP/1.1\r\n\r\n".to_owned(),
        "CONNECT localhost: HTTP/1.1\r\n\r\n".to_owned(),
        // IPv6 written so that another parser could read another address.
        format!("GET http://[::1%25lo]:{t}/ HTTP/1.1\r\n\r\n"),
        format!("GET http://::1:{t}/ HTTP/1.1\r\n\r\n"),
        format!("CONNECT [::1]x:{t} HTTP/1.1\r\n\r\n"),
    ];
    refused_with(p, &mut rx, &mut seen, "400", &named).await;
    // A NUL, and bytes that are no UTF-8 at all.
    let mut raw = b"GET http://loc".to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(format!("alhost:{t}/ HTTP/1.1\r\n\r\n").as_bytes());
    let nul = format!("GET http://loc\u{0}alhost:{t}/ HTTP/1.1\r\n\r\n").into_bytes();
    refused_with(p, &mut rx, &mut seen, "400", &[nul, raw]).await;
}

#[tokio::test]
async fn ipv6_literals_are_admitted_only_as_the_allow_list_writes_them() {
    let Some((target, mut seen)) = upstream("[::1]:0", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await else {
        return; // no IPv6 loopback on this machine
    };
    let (p, mut rx, _stop) = stoppable_proxy(format!("[::1]:{target}")).await;
    let (answer, _) = ask(p, &format!("GET http://[::1]:{target}/v6 HTTP/1.1\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let d = next_decision(&mut rx).await.expect("decision");
    assert!(d.allowed && d.host == "::1" && d.port == target, "{d:?}");
    let got = upstream_got(&mut seen).await;
    assert!(got.starts_with("GET /v6 HTTP/1.1\r\n") && got.contains(&format!("Host: [::1]:{target}\r\n")), "{got}");
    let (answer, _) = ask(p, &format!("CONNECT [::1]:{target} HTTP/1.1\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    // The same address written another way, or the IPv4 one, is not what the list names.
    for other in
        [format!("[0:0:0:0:0:0:0:1]:{target}"), format!("[::ffff:127.0.0.1]:{target}"), format!("127.0.0.1:{target}")]
    {
        let (answer, _) = ask(p, &format!("GET http://{other}/ HTTP/1.1\r\n\r\n")).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{other}: {answer}");
        assert!(!next_decision(&mut rx).await.expect("decision").allowed, "{other}");
    }
}

#[tokio::test]
async fn what_follows_an_admitted_connect_goes_into_its_tunnel_unread() {
    let target = echo_server().await;
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let behind = "GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    s.write_all(format!("CONNECT localhost:{target} HTTP/1.1\r\n\r\n{behind}").as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !String::from_utf8_lossy(&got).ends_with(behind) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await;
        let Ok(Ok(n @ 1..)) = n else { break };
        got.extend_from_slice(&b[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    // The echo server sent the bytes back through the tunnel: they went to the admitted target.
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with(behind), "{got}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    assert!(next_decision_within(&mut rx, 300).await.is_none());
    // A refused CONNECT ends the connection: nothing behind it is read.
    let (other, mut seen) = keep_alive_server().await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let behind = format!("GET http://localhost:{target}/ HTTP/1.1\r\n\r\n");
    s.write_all(format!("CONNECT localhost:{other} HTTP/1.1\r\n\r\n{behind}").as_bytes()).await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 403") && !answer.contains("200"), "{answer}");
    assert!(!next_decision(&mut rx).await.expect("decision").allowed);
    assert!(next_decision_within(&mut rx, 300).await.is_none());
    assert_eq!(received(&mut seen), "");
}

#[tokio::test]
async fn upgrade_headers_make_no_tunnel() {
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (target, mut seen) = upstream("127.0.0.1:0", switching).await.expect("bind");
    let (p, mut rx) = proxy(format!("localhost:{target}")).await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let req = format!(
        "GET http://localhost:{target}/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut s).await;
    // The upstream's switch is not passed back; the connection ends.
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    let _ = s.write_all(b"frames for the upstream").await;
    let got = upstream_got(&mut seen).await.to_ascii_lowercase();
    assert!(got.starts_with("get /ws http/1.1\r\n") && !got.contains("upgrade") && !got.contains("frames"), "{got}");
    // Answered normally, a request that asked for an upgrade leaves the connection HTTP: what the
    // client sends next is read as a request (and here is none).
    let (target, mut seen, p, mut rx) = guarded().await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let req = format!("GET http://localhost:{target}/again HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n");
    s.write_all(format!("{req}\x16\x03\x01 not http\r\n\r\n").as_bytes()).await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\r\n\r\nokHTTP/1.1 400"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    let d = next_decision(&mut rx).await.expect("decision");
    assert!(!d.allowed && d.host.ends_with(" not"), "{d:?}");
    let got = received(&mut seen);
    assert!(got.contains("GET /again ") && !got.to_ascii_lowercase().contains("upgrade"), "{got}");
    assert!(!got.contains("not http"), "{got}");
}

#[tokio::test]
async fn heads_past_the_limits_are_refused() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let url = format!("http://localhost:{target}/");
    // A head well inside the limit goes on.
    let (answer, _) = ask(p, &format!("GET {url} HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(12 * 1024))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    assert!(upstream_got(&mut seen).await.contains("X-Big: aaaa"));
    let many = "X-A: v\r\n".repeat(101);
    let too_large = [
        format!("GET {url} HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD)),
        format!("GET {url}{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD)),
        format!("GET {url} HTTP/1.1\r\n{many}\r\n"),
        // A head that never ends.
        format!("GET {url} HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(MAX_HEAD / 4)),
    ];
    refused_with(p, &mut rx, &mut seen, "431", &too_large).await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_is_cut_off_and_recorded() {
    let (target, mut seen, p, mut rx) = guarded().await;
    // A byte of the head every 5 s: the head is still not whole after 30 s.
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let start = tokio::time::Instant::now();
    let head = format!("GET http://localhost:{target}/ HTTP/1.1\r\nX: {}", "y".repeat(20));
    for b in head.bytes() {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        if start.elapsed() > std::time::Duration::from_secs(60) {
            break;
        }
    }
    let d = next_decision(&mut rx).await.expect("decision");
    assert!(!d.allowed && d.why.contains("within 30 s"), "{d:?}");
    let rest = read_to_close(&mut s).await;
    assert!(!rest.contains("200"), "{rest}");
    assert_eq!(received(&mut seen), "");
    // A connection kept alive and left idle after its request is closed without a refusal.
    let (answer, mut s) = ask(p, &format!("GET http://localhost:{target}/ HTTP/1.1\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    tokio::time::sleep(std::time::Duration::from_secs(31)).await;
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(next_decision_within(&mut rx, 300).await.is_none());
}

#[tokio::test]
async fn stopping_the_proxy_ends_its_open_tunnels() {
    let target = echo_server().await;
    let (p, mut rx, stop) = stoppable_proxy(format!("localhost:{target}")).await;
    let (answer, mut s) = ask(p, &format!("CONNECT localhost:{target} HTTP/1.1\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    s.write_all(b"ping").await.expect("write");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.expect("echo");
    stop.cancel();
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest}");
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut b)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "{n:?}");
}

#[tokio::test]
async fn the_unix_socket_proxy_decides_the_same_way() {
    let target = echo_server().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("proxy.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    tokio::spawn(serve_unix(listener, allow_list(vec![format!("localhost:{target}")]), tx, stop.clone()));
    for (req, status, allowed) in [
        (format!("CONNECT localhost:{target} HTTP/1.1\r\n\r\n"), "HTTP/1.1 200", true),
        ("CONNECT evil.example:443 HTTP/1.1\r\n\r\n".to_owned(), "HTTP/1.1 403", false),
        (format!("GET http://localhost:{target}/ HTTP/1.1\nHost: localhost\n\n"), "HTTP/1.1 400", false),
    ] {
        let mut s = UnixStream::connect(&path).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut b = vec![0u8; 256];
        let n = s.read(&mut b).await.expect("read");
        let answer = String::from_utf8_lossy(&b[..n]);
        assert!(answer.starts_with(status), "{req:?} -> {answer}");
        assert_eq!(next_decision(&mut rx).await.expect("decision").allowed, allowed, "{req:?}");
    }
    stop.cancel();
}

#[tokio::test]
async fn an_http2_preface_is_refused_and_recorded() {
    let (_, mut seen, p, mut rx) = guarded().await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(!answer.contains("200"), "{answer}");
    assert!(!next_decision(&mut rx).await.expect("decision").allowed);
    assert_eq!(received(&mut seen), "");
}

#[tokio::test]
async fn a_pipelined_request_is_decided_after_the_client_stops_sending() {
    let (target, mut seen, p, mut rx) = guarded().await;
    let mut s = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
    let both = format!(
        "GET http://localhost:{target}/a HTTP/1.1\r\nHost: localhost\r\n\r\nGET http://localhost:{target}/b HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    );
    s.write_all(both.as_bytes()).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("HTTP/1.1 403"), "{answer}");
    assert!(next_decision(&mut rx).await.expect("decision").allowed);
    let d = next_decision(&mut rx).await.expect("a decision on the second request");
    assert!(!d.allowed && d.why.contains("Host header"), "{d:?}");
    let got = upstream_got(&mut seen).await;
    assert!(got.contains("GET /a ") && !got.contains("/b"), "{got}");
}

#[tokio::test]
async fn a_request_hyper_cannot_read_is_recorded_by_its_request_line() {
    let (_, mut seen, p, mut rx) = guarded().await;
    let (answer, _) = ask(p, "CONNECT x`![p](q)|y:443 HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let d = next_decision(&mut rx).await.expect("decision");
    assert_eq!((d.host.as_str(), d.port, d.allowed), ("CONNECT x`![p](q)|y:443", 0, false), "{d:?}");
    assert_eq!(received(&mut seen), "");
}
