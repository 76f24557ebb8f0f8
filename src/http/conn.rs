//! Who may hold a connection to the API, and for how long. The station sits on a ward LAN: any
//! device there can open sockets without a token, and a socket costs a file descriptor that
//! the airing (clip files, the audio device) must never be refused. So:
//!
//! - at most `http.max_connections` at once and `http.max_connections_per_peer` from one address,
//!   far below the process's file limit;
//! - a newcomer over a limit takes the place of the oldest connection that is not serving a
//!   request (a client that never finishes its headers, or an idle keep-alive), so a flood of
//!   slow sockets cannot keep a real request (or `/healthz`) out; only when every connection is
//!   busy is the newcomer refused;
//! - request headers must arrive within [`HEADER_TIMEOUT`], a keep-alive connection idle for
//!   [`IDLE_TIMEOUT`] is closed;
//! - a request body must keep coming: no byte for [`BODY_STALL`], or less than [`BODY_MIN_RATE`]
//!   on average after [`BODY_GRACE`], ends it; and while the server waits for the client's next
//!   bytes the connection does not count as busy, so a body trickled in cannot hold a slot.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// The whole request head must arrive within this (slowloris).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request body with no new byte for this long is cut.
pub const BODY_STALL: Duration = Duration::from_secs(10);
/// After this long, a body must have come at least at [`BODY_MIN_RATE`] on average…
pub const BODY_GRACE: Duration = Duration::from_secs(20);
/// …bytes per second: far below a phone on slow 4G, far above a trickle.
pub const BODY_MIN_RATE: u64 = 2048;
/// Connections still open at shutdown get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_peer: usize,
}

/// One open connection, as the registry sees it.
struct Entry {
    peer: IpAddr,
    /// Requests in progress, counted until their response body has been sent.
    busy: Arc<AtomicUsize>,
    /// Rung when a newcomer takes this connection's place.
    evicted: Arc<Notify>,
}

/// The open connections, oldest first.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<(u64, BTreeMap<u64, Entry>)>>,
}

/// A connection's place in the registry; leaving drops it.
pub struct Ticket {
    id: u64,
    registry: Registry,
    busy: Arc<AtomicUsize>,
    evicted: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.inner.lock().expect("registry lock").1.remove(&self.id);
    }
}

impl Registry {
    /// A place for a connection from `peer`, making room by closing the oldest connection that
    /// is not serving a request (of this peer when the peer is at its limit); `None` when every
    /// candidate is busy.
    pub fn admit(&self, peer: IpAddr, limits: Limits) -> Option<Ticket> {
        let mut guard = self.inner.lock().expect("registry lock");
        let (next_id, open) = &mut *guard;
        let from_peer = open.values().filter(|e| e.peer == peer).count();
        let room_needed = if from_peer >= limits.max_per_peer {
            Some(Some(peer))
        } else if open.len() >= limits.max_connections {
            Some(None)
        } else {
            None
        };
        if let Some(only_peer) = room_needed {
            let victim = open
                .iter()
                .find(|(_, e)| only_peer.is_none_or(|p| e.peer == p) && e.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(entry) = open.remove(&victim) {
                entry.evicted.notify_one();
            }
        }
        let id = *next_id;
        *next_id += 1;
        let (busy, evicted) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        open.insert(id, Entry { peer, busy: busy.clone(), evicted: evicted.clone() });
        Some(Ticket { id, registry: self.clone(), busy, evicted })
    }

    pub fn open_connections(&self) -> usize {
        self.inner.lock().expect("registry lock").1.len()
    }
}

/// The peer's address, in every request's extensions (for logging and per-peer limits).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// Serves HTTP/1.1 on `io` until the client is done, the connection idles or is evicted, or
/// `shutdown` turns true (then it may finish what it is doing, briefly).
pub async fn serve_connection<I>(io: I, peer: IpAddr, app: Router, ticket: Ticket, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = ticket.busy.clone();
    let last_done = Arc::new(Mutex::new(Instant::now()));
    let done_at = last_done.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let guard = BusyGuard::new(busy.clone(), done_at.clone());
        request.extensions_mut().insert(Peer(peer));
        let app = app.clone();
        let busy = busy.clone();
        async move {
            let response = app.oneshot(request.map(|body| Body::new(ClientBody::new(body, busy)))).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked { inner: body, _guard: guard })))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(connection);
    let idle = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle_for = last_done.lock().expect("idle clock").elapsed();
            if ticket.busy.load(Ordering::Acquire) == 0 && idle_for >= IDLE_TIMEOUT {
                return;
            }
        }
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = ticket.evicted.notified() => {}
        () = idle => {}
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection.as_mut()).await;
        }
    }
}

/// Counts a request as in progress from its arrival until its response body is gone.
struct BusyGuard {
    busy: Arc<AtomicUsize>,
    done_at: Arc<Mutex<Instant>>,
}

impl BusyGuard {
    fn new(busy: Arc<AtomicUsize>, done_at: Arc<Mutex<Instant>>) -> BusyGuard {
        busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard { busy, done_at }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        *self.done_at.lock().expect("idle clock") = Instant::now();
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as busy until it has been sent.
struct Tracked {
    inner: Body,
    _guard: BusyGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body as the client sends it: while the server waits for its next bytes the
/// connection is not busy (it may be evicted), and it must keep moving (see the module's notes).
struct ClientBody {
    inner: hyper::body::Incoming,
    busy: Arc<AtomicUsize>,
    /// Whether this body has taken its request's count off `busy` while waiting.
    waiting: bool,
    stall: Pin<Box<tokio::time::Sleep>>,
    started: Instant,
    received: u64,
}

impl ClientBody {
    fn new(inner: hyper::body::Incoming, busy: Arc<AtomicUsize>) -> ClientBody {
        let stall = Box::pin(tokio::time::sleep(BODY_STALL));
        ClientBody { inner, busy, waiting: false, stall, started: Instant::now(), received: 0 }
    }

    fn too_slow(why: &str) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why.to_owned()))))
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if !this.waiting {
                    this.busy.fetch_sub(1, Ordering::AcqRel);
                    this.waiting = true;
                    // The wait is the client's from now (not the time the server took meanwhile).
                    this.stall.as_mut().reset(tokio::time::Instant::now() + BODY_STALL);
                }
                if this.stall.as_mut().poll(cx).is_ready() {
                    return ClientBody::too_slow("the request body stopped coming");
                }
                Poll::Pending
            }
            Poll::Ready(frame) => {
                if std::mem::take(&mut this.waiting) {
                    this.busy.fetch_add(1, Ordering::AcqRel);
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref().map_or(0, |d| d.len())))
                {
                    this.received += data as u64;
                    let elapsed = this.started.elapsed();
                    if elapsed > BODY_GRACE && this.received < BODY_MIN_RATE * elapsed.as_secs() {
                        return ClientBody::too_slow("the request body comes too slowly");
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        // Its request is still counted by its BusyGuard, which takes the count off itself.
        if self.waiting {
            self.busy.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// How long a TLS client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` turns true, each served as above (after a
/// bounded TLS handshake when `tls` is given), all counted in `registry`.
pub async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    registry: Registry,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: not fatal; the
                    // limits above keep the first from lasting.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => return,
        };
        let Some(ticket) = registry.admit(peer.ip(), limits) else {
            tracing::debug!(%peer, "connection refused: every connection is serving a request");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let (app, stopping, tls) = (app.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer.ip(), app, ticket, stopping).await,
                // The ticket is held while the handshake runs, and an eviction ends it at once
                // (its descriptor must be free when the registry counts it gone).
                Some(tls) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream));
                    let evicted = ticket.evicted.clone();
                    tokio::select! {
                        shaken = handshake => match shaken {
                            Ok(Ok(stream)) => serve_connection(stream, peer.ip(), app, ticket, stopping).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        },
                        () = evicted.notified() => {}
                    }
                }
            }
        });
    }
}

/// Waits, briefly, for the connections still open at shutdown to finish.
pub async fn drain(registry: &Registry) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while registry.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_connections: 3, max_per_peer: 2 };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_newcomer_takes_the_place_of_the_oldest_idle_connection() {
        let registry = Registry::default();
        let a1 = registry.admit(ip(1), LIMITS).unwrap();
        let _a2 = registry.admit(ip(1), LIMITS).unwrap();
        // Peer 1 at its limit: its oldest idle connection makes room.
        let _a3 = registry.admit(ip(1), LIMITS).unwrap();
        assert_eq!(registry.open_connections(), 2);
        assert!(Arc::strong_count(&a1.evicted) == 1, "the registry let go of the evicted one");
        // The whole server at its limit: the oldest idle one overall goes.
        let _b1 = registry.admit(ip(2), LIMITS).unwrap();
        let _c1 = registry.admit(ip(3), LIMITS).unwrap();
        assert_eq!(registry.open_connections(), 3);
    }

    #[test]
    fn busy_connections_are_never_evicted_and_then_the_newcomer_is_refused() {
        let registry = Registry::default();
        let tickets: Vec<Ticket> = (1..=3).map(|i| registry.admit(ip(i), LIMITS).unwrap()).collect();
        for ticket in &tickets {
            ticket.busy.store(1, Ordering::Release);
        }
        assert!(registry.admit(ip(9), LIMITS).is_none());
        tickets[1].busy.store(0, Ordering::Release);
        let newcomer = registry.admit(ip(9), LIMITS);
        assert!(newcomer.is_some(), "the idle one makes room");
        drop(tickets);
        assert_eq!(registry.open_connections(), 1);
    }
}
