//! Who may hold a connection to the API, and for how long. The station sits on a ward LAN: any
//! device there can open sockets without a token, and a socket costs a file descriptor that
//! the airing (clip files, the audio device) must never be refused. So:
//!
//! - at most `http.max_connections` at once and `http.max_connections_per_peer` from one address,
//!   far below the process's file limit;
//! - a newcomer over a limit takes the place of the oldest connection that is not serving a
//!   request (a client that never finishes its headers, or an idle keep-alive), so a flood of
//!   slow sockets cannot keep a real request (or `/healthz`) out; but a connection younger than
//!   [`EVICTION_GRACE`] is never taken, so churn cannot cut a slow phone mid-handshake;
//! - an address that opens more than [`NEW_PER_SECOND`] connections a second (bursts of
//!   [`NEW_BURST`]) is refused at accept while the server is three quarters full (or its own
//!   share is), so a few churning hosts cannot fill the slots with young connections, nor one
//!   host its own share (the addresses remembered are bounded, [`RATE_MEMORY`]); while the
//!   server has room to spare, it is served;
//! - when no slot can be had, [`Limits::reserved`] more are kept for addresses that presented a
//!   valid token within [`TRUSTED_FOR`] (the server [`Vouch`]es for them), and serve only
//!   requests that carry one (the server's `Reserved` check): an operator can queue an emergency
//!   while strangers hold every other slot;
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

/// The most hyper buffers for one connection, reading or writing.
const CONNECTION_BUFFER: usize = 16 * 1024;
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

/// A connection this young is never taken to make room.
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);
/// New connections an address may open per second, after a burst of [`NEW_BURST`].
pub const NEW_PER_SECOND: f64 = 8.0;
pub const NEW_BURST: f64 = 16.0;
/// Slots kept, beyond `max_connections`, for requests with a valid token.
pub const RESERVED_FOR_TOKENS: usize = 8;
/// How long an address that presented a valid token may use the reserved slots.
pub const TRUSTED_FOR: Duration = Duration::from_secs(24 * 3600);
/// Addresses whose connection rate (or trust) is remembered at most (an idle one is forgotten first).
pub const RATE_MEMORY: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_peer: usize,
    /// Slots beyond `max_connections` for requests with a valid token only.
    pub reserved: usize,
}

/// In a request's extensions when its connection holds a reserved slot: the server must serve
/// it only with a valid token (and otherwise answer 503 and close).
#[derive(Debug, Clone, Copy)]
pub struct Reserved;

/// One open connection, as the registry sees it.
struct Entry {
    peer: IpAddr,
    opened: Instant,
    reserved: bool,
    /// Requests in progress, counted until their response body has been sent.
    busy: Arc<AtomicUsize>,
    /// Rung when a newcomer takes this connection's place.
    evicted: Arc<Notify>,
}

/// The open connections, oldest first, how fast each address has been opening them, and which
/// addresses presented a valid token lately.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<(u64, BTreeMap<u64, Entry>)>>,
    rates: Arc<Mutex<std::collections::HashMap<IpAddr, Bucket>>>,
    trusted: Arc<Mutex<std::collections::HashMap<IpAddr, Instant>>>,
}

/// In every request's extensions: the server calls [`Vouch::vouch`] once the request has shown
/// a valid token, and its address may then use the reserved slots.
#[derive(Clone)]
pub struct Vouch {
    registry: Registry,
    peer: IpAddr,
}

impl Vouch {
    pub fn vouch(&self) {
        let mut trusted = self.registry.trusted.lock().expect("trusted lock");
        let now = Instant::now();
        if trusted.len() >= RATE_MEMORY && !trusted.contains_key(&self.peer) {
            trusted.retain(|_, at| now.duration_since(*at) < TRUSTED_FOR);
            if trusted.len() >= RATE_MEMORY {
                return; // full of fresh trust: the reserve is for a few, not for thousands
            }
        }
        trusted.insert(self.peer, now);
    }
}

/// A token bucket: `NEW_BURST` connections, refilled at `NEW_PER_SECOND`.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> Bucket {
        let tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * NEW_PER_SECOND).min(NEW_BURST);
        Bucket { tokens, at: now }
    }
}

/// A connection's place in the registry; leaving drops it.
pub struct Ticket {
    id: u64,
    registry: Registry,
    busy: Arc<AtomicUsize>,
    evicted: Arc<Notify>,
    /// Whether it holds one of the slots kept for requests with a valid token.
    pub reserved: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.inner.lock().expect("registry lock").1.remove(&self.id);
    }
}

impl Registry {
    /// Whether `peer` presented a valid token within [`TRUSTED_FOR`].
    fn trusted(&self, peer: IpAddr, now: Instant) -> bool {
        let trusted = self.trusted.lock().expect("trusted lock");
        trusted.get(&peer).is_some_and(|at| now.duration_since(*at) < TRUSTED_FOR)
    }

    /// Whether `peer` may open another connection now: within its rate (see the module's notes),
    /// or an address that showed a valid token, so a host behind the operator's NAT cannot use
    /// up the operator's rate (it still holds no more than its per-address share).
    pub fn may_open(&self, peer: IpAddr, now: Instant) -> bool {
        if self.trusted(peer, now) {
            return true;
        }
        let mut rates = self.rates.lock().expect("rates lock");
        if rates.len() >= RATE_MEMORY && !rates.contains_key(&peer) {
            // Forget the addresses that are back to a full bucket; if none is, forget them all
            // (memory stays bounded; at worst a churning host gets a fresh burst).
            rates.retain(|_, bucket| bucket.refilled(now).tokens < NEW_BURST);
            if rates.len() >= RATE_MEMORY {
                rates.clear();
            }
        }
        let bucket = rates.entry(peer).or_insert(Bucket { tokens: NEW_BURST, at: now });
        *bucket = bucket.refilled(now);
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// A place for a connection from `peer`, making room by closing the oldest connection that
    /// is not serving a request and is older than [`EVICTION_GRACE`] (of this peer when the peer
    /// is at its limit); failing that, a reserved slot; `None` when there is neither, or when
    /// room must be made and the peer is over its rate (`within_rate`, from [`Self::may_open`]).
    pub fn admit(&self, peer: IpAddr, limits: Limits, now: Instant, within_rate: bool) -> Option<Ticket> {
        let mut guard = self.inner.lock().expect("registry lock");
        let (next_id, open) = &mut *guard;
        let evictable =
            |e: &Entry| e.busy.load(Ordering::Acquire) == 0 && now.duration_since(e.opened) >= EVICTION_GRACE;
        let from_peer = open.values().filter(|e| e.peer == peer && !e.reserved).count();
        let regular = open.values().filter(|e| !e.reserved).count();
        let room_needed = if from_peer >= limits.max_per_peer {
            Some(Some(peer))
        } else if regular >= limits.max_connections {
            Some(None)
        } else {
            None
        };
        // Under pressure (three quarters full) an address over its rate is refused even where a
        // place is free: places freed together must not all go to one churning host at once,
        // leaving nothing old enough to make room for the next honest client.
        if !within_rate && (room_needed.is_some() || regular * 4 >= limits.max_connections * 3) {
            return None;
        }
        let mut reserved = false;
        if let Some(only_peer) = room_needed {
            let victim = open
                .iter()
                .find(|(_, e)| !e.reserved && only_peer.is_none_or(|p| e.peer == p) && evictable(e))
                .map(|(id, _)| *id);
            let victim = match victim {
                Some(victim) => Some(victim),
                None if !self.trusted(peer, now) => return None,
                // No regular slot: a reserved one, free or taken from an idle holder.
                None => {
                    reserved = true;
                    let holders = open.iter().filter(|(_, e)| e.reserved);
                    if holders.clone().count() < limits.reserved {
                        None
                    } else {
                        Some(holders.filter(|(_, e)| evictable(e)).map(|(id, _)| *id).next()?)
                    }
                }
            };
            if let Some(entry) = victim.and_then(|victim| open.remove(&victim)) {
                entry.evicted.notify_one();
            }
        }
        let id = *next_id;
        *next_id += 1;
        let (busy, evicted) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        open.insert(id, Entry { peer, opened: now, reserved, busy: busy.clone(), evicted: evicted.clone() });
        Some(Ticket { id, registry: self.clone(), busy, evicted, reserved })
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
    let (busy, reserved) = (ticket.busy.clone(), ticket.reserved);
    let vouch = Vouch { registry: ticket.registry.clone(), peer };
    let last_done = Arc::new(Mutex::new(Instant::now()));
    let done_at = last_done.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        let guard = BusyGuard::new(busy.clone(), done_at.clone());
        request.extensions_mut().insert(Peer(peer));
        request.extensions_mut().insert(vouch.clone());
        if reserved {
            request.extensions_mut().insert(Reserved);
        }
        let app = app.clone();
        let busy = busy.clone();
        async move {
            let response = app.oneshot(request.map(|body| Body::new(ClientBody::new(body, busy)))).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked { inner: body, _guard: guard })))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper queues up to ~400 KiB per connection by default: a thousand stations downloading a
    // bulletin at once held 414 MiB at the office (232 MiB with 64 KiB).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(CONNECTION_BUFFER);
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
        let now = Instant::now();
        let within_rate = registry.may_open(peer.ip(), now);
        let Some(ticket) = registry.admit(peer.ip(), limits, now, within_rate) else {
            tracing::debug!(%peer, within_rate, "connection refused: the server is full and no place can be made");
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

    const LIMITS: Limits = Limits { max_connections: 3, max_per_peer: 2, reserved: 1 };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_newcomer_takes_the_place_of_the_oldest_idle_connection_once_it_is_past_its_grace() {
        let (registry, t0) = (Registry::default(), Instant::now());
        let later = t0 + EVICTION_GRACE;
        let a1 = registry.admit(ip(1), LIMITS, t0, true).unwrap();
        let _a2 = registry.admit(ip(1), LIMITS, t0, true).unwrap();
        // Peer 1 at its limit: its oldest idle connection makes room.
        let _a3 = registry.admit(ip(1), LIMITS, later, true).unwrap();
        assert_eq!(registry.open_connections(), 2);
        assert!(Arc::strong_count(&a1.evicted) == 1, "the registry let go of the evicted one");
        // The whole server at its limit: the oldest idle one overall goes.
        let _b1 = registry.admit(ip(2), LIMITS, later, true).unwrap();
        let c1 = registry.admit(ip(3), LIMITS, later, true).unwrap();
        assert!(!c1.reserved);
        assert_eq!(registry.open_connections(), 3);
    }

    fn trust(registry: &Registry, peer: IpAddr) {
        Vouch { registry: registry.clone(), peer }.vouch();
    }

    #[test]
    fn churn_cannot_take_a_connection_younger_than_its_grace() {
        let (registry, t0) = (Registry::default(), Instant::now());
        trust(&registry, ip(9));
        let slow_phone = registry.admit(ip(1), LIMITS, t0, true).unwrap();
        let _others: Vec<Ticket> = (2..=3).map(|i| registry.admit(ip(i), LIMITS, t0, true).unwrap()).collect();
        let just_before = t0 + EVICTION_GRACE - Duration::from_millis(1);
        // Full of young connections: the churner gets the reserved slot, then nothing.
        let churn = registry.admit(ip(9), LIMITS, just_before, true).unwrap();
        assert!(churn.reserved);
        assert!(registry.admit(ip(9), LIMITS, just_before, true).is_none());
        assert!(Arc::strong_count(&slow_phone.evicted) == 2, "the young connection was kept");
        // Past the grace, an address over its rate still may not make room; with room, it may.
        assert!(registry.admit(ip(9), LIMITS, t0 + EVICTION_GRACE, false).is_none());
        drop(slow_phone);
        let served = registry.admit(ip(9), LIMITS, t0 + EVICTION_GRACE, false);
        assert!(served.is_some(), "under 3/4 full: served");
        assert!(
            registry.admit(ip(8), LIMITS, t0 + EVICTION_GRACE, false).is_none(),
            "3/4 full: over its rate, refused"
        );
    }

    #[test]
    fn busy_connections_are_never_evicted_and_a_reserved_slot_is_the_last_resort() {
        let (registry, t0) = (Registry::default(), Instant::now());
        trust(&registry, ip(9));
        let later = t0 + EVICTION_GRACE;
        let tickets: Vec<Ticket> = (1..=3).map(|i| registry.admit(ip(i), LIMITS, t0, true).unwrap()).collect();
        for ticket in &tickets {
            ticket.busy.store(1, Ordering::Release);
        }
        assert!(registry.admit(ip(8), LIMITS, later, true).is_none(), "a stranger gets no reserved slot");
        let reserved = registry.admit(ip(9), LIMITS, later, true).unwrap();
        assert!(reserved.reserved, "no regular slot: a reserved one, for an address that showed a token");
        reserved.busy.store(1, Ordering::Release);
        assert!(registry.admit(ip(9), LIMITS, later, true).is_none(), "every slot busy: refused");
        tickets[1].busy.store(0, Ordering::Release);
        let newcomer = registry.admit(ip(9), LIMITS, later, true).unwrap();
        assert!(!newcomer.reserved, "the idle one makes room");
        drop(tickets);
        assert_eq!(registry.open_connections(), 2);
    }

    #[test]
    fn an_address_opens_a_burst_then_at_its_rate_and_the_addresses_remembered_are_bounded() {
        let (registry, t0) = (Registry::default(), Instant::now());
        let opened = (0..100).filter(|_| registry.may_open(ip(1), t0)).count();
        assert_eq!(opened, NEW_BURST as usize);
        assert!(registry.may_open(ip(2), t0), "another address is not slowed");
        trust(&registry, ip(3));
        assert!((0..100).all(|_| registry.may_open(ip(3), t0)), "the operator's address is never over its rate");
        let second = t0 + Duration::from_secs(1);
        let opened = (0..100).filter(|_| registry.may_open(ip(1), second)).count();
        assert_eq!(opened, NEW_PER_SECOND as usize);
        for i in 0..(RATE_MEMORY as u32 * 2) {
            registry.may_open(IpAddr::from(i.to_be_bytes()), second);
        }
        assert!(registry.rates.lock().unwrap().len() <= RATE_MEMORY);
    }
}
