//! Where each request head on a client connection begins and ends, seen in the bytes hyper reads,
//! for the one thing hyper's parser does not tell: whether a head ended its lines with a bare line
//! feed instead of CRLF. hyper reads such a head; other parsers may read it differently, so the
//! proxy refuses it.
//!
//! hyper parses the heads; this module only follows them. It finds the end of a head the way
//! httparse does (the first empty line after the request line, with blank lines before the
//! request line skipped), then holds what follows until the service says how long the body is
//! (`Heads::next`, from hyper's own framing), skips that many bytes, and looks at the next head.
//! A tunnel stops it (`Heads::stop`). Should it ever lose step with hyper, `next` answers `None`
//! and the request is refused.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes held after a head while its body's length is not yet known: hyper reads at most
/// its buffer (`MAX_HEAD`) ahead, so more means the two have lost step.
const MAX_HELD: usize = 4 * super::MAX_HEAD;

/// What the proxy knows of the heads on one connection; shared by its reader and its service.
#[derive(Clone, Default)]
pub(super) struct Heads(Arc<Mutex<Scan>>);

#[derive(Default)]
struct Scan {
    state: State,
    /// Bytes after a whole head, until its body's length is known.
    held: Vec<u8>,
    /// Whether a request was read on this connection.
    served: bool,
    /// The start of the request line of the last head begun, as it came.
    asked: Vec<u8>,
}

/// How much of a request line is kept to name a request hyper could not read.
const ASKED: usize = 120;

enum State {
    /// In a head: whether a line of it ended in a bare line feed, whether its request line has
    /// begun, whether it is being read, whether the next byte starts a line, whether the last
    /// byte was a CR.
    Head { bare: bool, begun: bool, asking: bool, line_start: bool, cr: bool },
    /// A whole head was read; its body's length is not yet known.
    Read { bare: bool },
    /// In a body: how many of its bytes are still to come.
    Body(u64),
    /// Not following: a tunnel, or step lost.
    Off,
}

impl Default for State {
    fn default() -> Self {
        State::Head { bare: false, begun: false, asking: false, line_start: true, cr: false }
    }
}

impl Heads {
    fn scan(&self) -> std::sync::MutexGuard<'_, Scan> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The head hyper has just parsed, whose body is `body` bytes long: `Some(true)` when one of
    /// its lines ended in a bare line feed, `None` when no whole head was seen.
    pub(super) fn next(&self, body: u64) -> Option<bool> {
        let mut scan = self.scan();
        let State::Read { bare } = scan.state else { return None };
        scan.state = if body == 0 { State::default() } else { State::Body(body) };
        scan.served = true;
        let held = std::mem::take(&mut scan.held);
        scan.feed(&held);
        Some(bare)
    }

    /// Whether a request was served and no byte of a next one has come (blank lines aside): a
    /// connection kept alive and left idle, not a slow head.
    pub(super) fn idle(&self) -> bool {
        let scan = self.scan();
        scan.served && matches!(scan.state, State::Head { begun: false, .. })
    }

    /// The method and target of the head hyper was reading, or of the last one (from the first
    /// 120 bytes of its request line).
    pub(super) fn asked(&self) -> String {
        let line = String::from_utf8_lossy(&self.scan().asked).into_owned();
        line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    }

    /// The connection is a tunnel now: what follows is not HTTP.
    pub(super) fn stop(&self) {
        let mut scan = self.scan();
        scan.state = State::Off;
        scan.held = Vec::new();
    }
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            match &mut self.state {
                State::Off => return,
                State::Read { .. } => {
                    if self.held.len() + bytes.len() > MAX_HELD {
                        self.state = State::Off;
                        self.held = Vec::new();
                    } else {
                        self.held.extend_from_slice(bytes);
                    }
                    return;
                }
                State::Body(left) => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::default();
                    }
                    bytes = &bytes[take..];
                }
                State::Head { bare, begun, asking, line_start, cr } => {
                    bytes = rest;
                    match b {
                        b'\n' => {
                            *bare |= !*cr;
                            let ended = *line_start && *begun;
                            (*asking, *line_start, *cr) = (false, true, false);
                            if ended {
                                self.state = State::Read { bare: *bare };
                            }
                        }
                        b'\r' => *cr = true,
                        _ => {
                            if !*begun {
                                (*begun, *asking) = (true, true);
                                self.asked.clear();
                            }
                            if *asking && self.asked.len() < ASKED {
                                self.asked.push(b);
                            }
                            (*line_start, *cr) = (false, false);
                        }
                    }
                }
            }
        }
    }
}

/// A client's stream, with what hyper reads from it shown to `Heads`.
pub(super) struct Watched<S> {
    inner: S,
    heads: Heads,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, heads: Heads) -> Self {
        Watched { inner, heads }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.heads.scan().feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
