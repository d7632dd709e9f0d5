//! One client connection of the egress proxy, on hyper's HTTP/1 server: every request on it
//! (kept alive or pipelined) is parsed by hyper, checked and decided on its own. A refused request
//! is answered and ends the connection; an admitted `CONNECT` becomes an opaque tunnel; an admitted
//! plain-HTTP request goes to exactly the host and port that were checked, on an upstream
//! connection of its own, rewritten to origin form by hyper's client (which frames its body
//! itself), and the answer comes back on the client's connection.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, BodyStream, Empty, StreamBody};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::heads::{Heads, Watched};
use super::{CONNECT_TIMEOUT, Decision, Gate, HEAD_TIMEOUT, MAX_HEAD, split_target};

type Reply = UnsyncBoxBody<Bytes, hyper::Error>;

/// What one connection's requests share.
struct Cx {
    gate: Gate,
    decisions: mpsc::Sender<Decision>,
    heads: Heads,
    /// The admitted `CONNECT`, whose tunnel starts once hyper hands the connection over.
    tunnel: mpsc::Sender<(hyper::upgrade::OnUpgrade, TcpStream)>,
    /// Ends the upstream connections of its requests: cancelled with the proxy, and when the
    /// client connection ends (a stalled upstream is not held open by a client gone away).
    upstreams: CancellationToken,
}

/// Serves one client until it is done or `cancel`.
pub(super) async fn handle<S>(client: S, gate: Gate, decisions: mpsc::Sender<Decision>, cancel: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let heads = Heads::default();
    let (tunnel, mut tunnels) = mpsc::channel(1);
    let upstreams = cancel.child_token();
    let _ended = upstreams.clone().drop_guard();
    let cx = Arc::new(Cx { gate, decisions: decisions.clone(), heads: heads.clone(), tunnel, upstreams });
    let watched = Watched::new(client, heads.clone());
    let service = hyper::service::service_fn(move |req| {
        let cx = Arc::clone(&cx);
        async move { Ok::<_, Infallible>(respond(req, &cx).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        // A client that has sent all it will still gets the answer to each request it sent.
        .half_close(true)
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(watched), service)
        .with_upgrades()
        .await;
    if let Err(e) = served
        && !(e.is_timeout() && heads.idle())
        && let Some(why) = unreadable(&e)
    {
        let asked = heads.asked();
        let asked = if asked.is_empty() { "(no request)".to_owned() } else { asked };
        let _ = decisions.send(refused(&asked, 0, why)).await;
    }
    if let Ok((upgrade, mut upstream)) = tunnels.try_recv()
        && let Ok(upgraded) = upgrade.await
    {
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
    }
}

/// Why a connection hyper could not read is recorded as refused; `None` when the client only went
/// away.
fn unreadable(e: &hyper::Error) -> Option<String> {
    if e.is_parse_too_large() {
        Some(format!("a request head over {} KiB or of over 100 headers", MAX_HEAD / 1024))
    } else if e.is_timeout() {
        Some(format!("no complete request head within {} s", HEAD_TIMEOUT.as_secs()))
    } else if e.is_parse() {
        Some(format!("an unreadable request head ({e})"))
    } else {
        None
    }
}

fn refused(host: &str, port: u16, why: String) -> Decision {
    tracing::debug!(target: "lightsout::egress", host, port, why = %why, "refused");
    Decision { host: host.to_owned(), port, allowed: false, why }
}

/// A checked target.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
}

/// A request refused before anything of it goes upstream: what is recorded and the status the
/// client gets.
#[derive(Debug)]
struct Refusal {
    host: String,
    port: u16,
    status: StatusCode,
    why: String,
}

impl Refusal {
    fn of(target: &Target, status: StatusCode, why: &str) -> Refusal {
        Refusal { host: target.host.clone(), port: target.port, status, why: why.to_owned() }
    }
}

async fn respond(mut req: Request<Incoming>, cx: &Cx) -> Response<Reply> {
    let checked = match cx.heads.next(req.body().size_hint().exact().unwrap_or(0)) {
        Some(false) => check(&req),
        Some(true) => Err(not_proxy(&req, "a request head with bare line feeds (not CRLF)")),
        None => Err(not_proxy(&req, "a request head the proxy could not delimit")),
    };
    let target = match checked {
        Ok(target) => target,
        Err(r) => {
            let _ = cx.decisions.send(refused(&r.host, r.port, r.why)).await;
            return closing(r.status);
        }
    };
    let verdict = (cx.gate)(&target.host, target.port);
    let why = verdict.clone().unwrap_or_else(|e| e);
    let decision = Decision { host: target.host.clone(), port: target.port, allowed: verdict.is_ok(), why };
    tracing::debug!(target: "lightsout::egress", host = %decision.host, port = decision.port, allowed = decision.allowed, why = %decision.why, "decided");
    let _ = cx.decisions.send(decision).await;
    if verdict.is_err() {
        return closing(StatusCode::FORBIDDEN);
    }
    let reached = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((target.host.as_str(), target.port))).await;
    let Ok(Ok(upstream)) = reached else { return closing(StatusCode::BAD_GATEWAY) };
    if req.method() == Method::CONNECT {
        cx.heads.stop();
        let upgrade = hyper::upgrade::on(&mut req);
        let _ = cx.tunnel.try_send((upgrade, upstream));
        let mut established = Response::new(empty());
        established.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"Connection Established"));
        return established;
    }
    pass_on(req, &target, upstream, &cx.upstreams).await.unwrap_or_else(|| closing(StatusCode::BAD_GATEWAY))
}

/// A refusal of a request that names no target the proxy can read.
fn not_proxy<B>(req: &Request<B>, why: &str) -> Refusal {
    let asked: String = format!("{} {}", req.method(), req.uri()).chars().take(120).collect();
    Refusal { host: asked, port: 0, status: StatusCode::BAD_REQUEST, why: why.to_owned() }
}

/// The target a request names, or why it is refused: `CONNECT host:port`, or an absolute-form
/// `http://host[:port]/...` whose `Host` header, if any, names the same host. What the proxy
/// cannot frame or read one way only is refused, so that the request checked is the request sent.
fn check<B: hyper::body::Body>(req: &Request<B>) -> Result<Target, Refusal> {
    const NOT_PROXY: &str = "not a proxy request for a host name and port";
    let uri = req.uri();
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if req.method() == Method::CONNECT {
        let (host, port) = uri
            .authority()
            .filter(|_| uri.scheme().is_none() && uri.path_and_query().is_none())
            .and_then(|a| split_target(a.as_str(), 443))
            .ok_or_else(|| not_proxy(req, NOT_PROXY))?;
        let target = Target { host, port };
        if chunked || req.body().size_hint().exact() != Some(0) {
            return Err(Refusal::of(&target, StatusCode::BAD_REQUEST, "a CONNECT request with a body"));
        }
        return Ok(target);
    }
    if uri.scheme() != Some(&hyper::http::uri::Scheme::HTTP) {
        return Err(not_proxy(req, NOT_PROXY));
    }
    let (host, port) =
        uri.authority().and_then(|a| split_target(a.as_str(), 80)).ok_or_else(|| not_proxy(req, NOT_PROXY))?;
    let target = Target { host, port };
    if chunked {
        return Err(Refusal::of(
            &target,
            StatusCode::NOT_IMPLEMENTED,
            "a request body in Transfer-Encoding cannot be framed by the proxy; send Content-Length",
        ));
    }
    let mut named = req.headers().get_all(header::HOST).iter();
    if let (Some(_), Some(_)) = (named.next(), named.next()) {
        return Err(Refusal::of(&target, StatusCode::BAD_REQUEST, "it has more than one Host header"));
    }
    if let Some(value) = req.headers().get(header::HOST) {
        let value = String::from_utf8_lossy(value.as_bytes());
        if split_target(&value, target.port).map(|(h, _)| h).as_deref() != Some(target.host.as_str()) {
            let value: String = value.chars().take(80).collect();
            let why = format!("its Host header names another host ({value})");
            return Err(Refusal::of(&target, StatusCode::FORBIDDEN, &why));
        }
    }
    Ok(target)
}

/// Headers for one hop, never passed on (the proxy writes its own `Host` and `Connection`, and
/// hyper frames each body itself).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "connection"
            | "proxy-connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "proxy-authorization"
            | "proxy-authenticate"
    )
}

/// `headers` without those for one hop, nor those its `Connection` headers name; after `first`.
fn end_to_end(headers: &HeaderMap, first: HeaderMap) -> HeaderMap {
    let named: Vec<String> = ["connection", "proxy-connection"]
        .into_iter()
        .flat_map(|h| headers.get_all(h))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = first;
    for (name, value) in headers {
        if !hop_by_hop(name.as_str()) && !named.iter().any(|n| n == name.as_str()) {
            out.append(name, value.clone());
        }
    }
    out
}

/// Sends an admitted plain-HTTP request to its target and returns the answer; `None` when the
/// target gave none that can be passed on.
async fn pass_on(
    req: Request<Incoming>,
    target: &Target,
    upstream: TcpStream,
    cancel: &CancellationToken,
) -> Option<Response<Reply>> {
    let (parts, body) = req.into_parts();
    let path = match parts.uri.query() {
        Some(q) => format!("{}?{q}", parts.uri.path()),
        None => parts.uri.path().to_owned(),
    };
    let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let host = if target.port == 80 { host } else { format!("{host}:{}", target.port) };
    let mut first = HeaderMap::new();
    first.insert(header::HOST, HeaderValue::from_str(&host).ok()?);
    let mut headers = end_to_end(&parts.headers, first);
    // One request per upstream connection: it goes to the target that was checked, and nothing
    // else the client sends reaches that connection.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = path.parse::<Uri>().ok()?;
    *out.version_mut() = if parts.version == Version::HTTP_10 { Version::HTTP_10 } else { Version::HTTP_11 };
    *out.headers_mut() = headers;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(upstream))
        .await
        .ok()?;
    let cancel = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => {}
            _ = conn => {}
        }
    });
    let answer = sender.send_request(out).await.ok()?;
    // The client asked for no upgrade upstream (`Upgrade` is not passed on); a switch of protocol
    // is not passed back.
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let (mut parts, mut body) = answer.into_parts();
    parts.headers = end_to_end(&parts.headers, HeaderMap::new());
    parts.version = Version::HTTP_11;
    // The head goes back with the first piece of the body, in one write where it can.
    let body = match body.frame().await {
        None => empty(),
        Some(Err(_)) => return None,
        Some(Ok(frame)) => {
            StreamBody::new(futures_util::stream::once(async { Ok(frame) }).chain(BodyStream::new(body))).boxed_unsync()
        }
    };
    Some(Response::from_parts(parts, body))
}

fn empty() -> Reply {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An answer with no body, after which the connection ends.
fn closing(status: StatusCode) -> Response<Reply> {
    let mut answer = Response::new(empty());
    *answer.status_mut() = status;
    answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}
