//! Connections to the node's listeners: a budget of open connections per listener, and
//! timeouts that close connections that carry no request.
//!
//! Every open connection holds a file descriptor. Without bounds, idle connections (or a
//! client that opens many and sends nothing) use up the process's descriptors, and then
//! neither Flight SQL nor `/healthz` can accept anything. So each listener (Flight SQL, HTTP)
//! has its own budget, below the descriptor limit: a connection beyond it is closed at once,
//! the listener keeps accepting, and a full Flight SQL budget leaves HTTP (health, readiness)
//! untouched. A connection is closed when it carries no request:
//!
//! - within `handshake_timeout` of being opened (TLS and HTTP/2 handshakes, first request);
//! - within the idle timeout of its last request ending.
//!
//! A connection is busy from the moment a request arrives until its response has been sent
//! to the end (or abandoned): [`TrackRequests`] counts them, from the request extension the
//! listener gives every connection ([`Activity`]). A long query, or a slow reader of a large
//! result, is never cut by the idle timeout.
//!
//! A connection ends with a lingering close (RFC 9112, section 9.6): the node sends its last
//! bytes and a FIN, then reads and discards what the client still sends (a window update, a
//! ping) until the client closes too, for [`LINGER`] at most. Closing a socket that has unread
//! bytes makes the kernel send a reset, and a reset makes the client's kernel discard the end
//! of a response it has received but not yet read: the last rows of a stream that was drained
//! during shutdown were lost that way.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::{debug, error, warn};

/// Descriptors left for everything but client connections (data files, peers, SPARQL
/// workers, logs) when the budgets are derived from the descriptor limit: a quarter of the
/// limit, at least this many.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The most HTTP connections by default: health probes and catalog harvesters need few.
const HTTP_DEFAULT_CAP: u64 = 1024;

/// Budgets derived from a descriptor limit this large are derived from this instead.
const NOFILE_CAP: u64 = 1 << 20;

/// How long a closed connection waits for the client to close its side.
pub const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and discarded from a closing connection.
const LINGER_BYTES: usize = 256 * 1024;

/// The soft limit on open file descriptors of this process (RLIMIT_NOFILE).
pub fn descriptor_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Default budgets (Flight SQL, HTTP) for a descriptor limit of `nofile`: a quarter of the
/// descriptors (at least 64) stay free for files and peers; HTTP gets a quarter of the rest (at
/// most 1,024), Flight SQL the remainder. For 1,024 descriptors: 576 and 192.
pub fn default_budgets(nofile: u64) -> (usize, usize) {
    let nofile = nofile.min(NOFILE_CAP);
    let reserve = (nofile / 4).max(RESERVED_DESCRIPTORS);
    let available = nofile.saturating_sub(reserve).max(2);
    let http = (available / 4).clamp(1, HTTP_DEFAULT_CAP);
    let flight = (available - http).max(1);
    (flight as usize, http as usize)
}

/// How long a connection may carry no request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From being opened to its first request.
    pub handshake: Duration,
    /// From the end of its last request to the next.
    pub idle: Duration,
}

/// What a connection is doing; shared between the connection and the requests it carries.
#[derive(Debug, Clone)]
pub struct Activity(Arc<ActivityState>);

#[derive(Debug)]
struct ActivityState {
    opened: Instant,
    /// Requests whose response has not ended yet.
    busy: AtomicUsize,
    /// When the last request ended; `None` before the first.
    last_done: Mutex<Option<Instant>>,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(ActivityState {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            last_done: Mutex::new(None),
        }))
    }

    /// A request starts; it ends when the returned guard is dropped.
    fn begin(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection is to be closed unless a request arrives; `None` while busy.
    fn deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        if self.0.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(match *self.0.last_done.lock() {
            None => self.0.opened + timeouts.handshake,
            Some(done) => done + timeouts.idle,
        })
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.0.last_done.lock() = Some(Instant::now());
        self.0.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted connection: holds a place in its listener's budget until it is dropped, and
/// reads as closed (end of file) once it has carried no request for too long, which ends the
/// HTTP/1, HTTP/2 or TLS connection on top of it.
#[derive(Debug)]
pub struct Conn {
    /// `Some` until dropped, when it moves to [`linger`].
    io: Option<TcpStream>,
    activity: Activity,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    /// Its place in the listener's budget, given back when the connection closes.
    permit: Option<OwnedSemaphorePermit>,
    /// The places of closing connections (see [`linger`]).
    closing: Arc<Semaphore>,
}

impl Conn {
    fn new(
        io: TcpStream,
        permit: OwnedSemaphorePermit,
        closing: Arc<Semaphore>,
        timeouts: Timeouts,
    ) -> Self {
        let activity = Activity::new();
        let first = timeouts.handshake.min(timeouts.idle);
        let timer = Box::pin(tokio::time::sleep_until(activity.0.opened + first));
        Self {
            io: Some(io),
            activity,
            timeouts,
            timer,
            permit: Some(permit),
            closing,
        }
    }

    fn io(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.io.as_mut().expect("open until dropped"))
    }

    /// Whether the connection has carried no request for too long; otherwise the timer is
    /// armed (with `cx`'s waker) for the next check.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            // Look again after an idle period at the latest: a request may start and end
            // in between, and the deadline then moves to its end (earlier or later).
            let next = match self.activity.deadline(&self.timeouts) {
                None => now + self.timeouts.idle,
                Some(deadline) if deadline <= now => return true,
                Some(deadline) => deadline.min(now + self.timeouts.idle),
            };
            self.timer.as_mut().reset(next);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            debug!("closing a connection that carried no request in time");
            // End of file: the protocol on top closes the connection.
            return Poll::Ready(Ok(()));
        }
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The connection's place in the budget is free at once: a new client need not wait
        // for this one to finish closing.
        drop(self.permit.take());
        let Some(io) = self.io.take() else {
            return;
        };
        // Closing connections have places of their own; when they are all taken (a flood of
        // connections), and outside a runtime (never, in the node), the socket just closes.
        if let Ok(place) = Arc::clone(&self.closing).try_acquire_owned()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(io, place));
        }
    }
}

/// Closes `io` without a reset: FIN after everything written, then reads until the client
/// closes, for [`LINGER`] and [`LINGER_BYTES`] at most. Holds a place among the closing
/// connections until then.
async fn linger(mut io: TcpStream, permit: OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_ok() {
        let mut buf = vec![0u8; 8 * 1024];
        let mut read = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while read < LINGER_BYTES {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
        })
        .await;
    }
    drop(io);
    drop(permit);
}

/// tonic puts the connection's [`Activity`] into every request's extensions (wrapped in a
/// `TlsConnectInfo` over TLS), where [`TrackRequests`] finds it.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Activity;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.activity.clone()
    }
}

/// A listener that accepts connections within a budget.
#[derive(Debug)]
pub struct Limited {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    max: usize,
    closing: Arc<Semaphore>,
    timeouts: Timeouts,
    what: &'static str,
    refused: u64,
}

impl Limited {
    /// Accepts at most `max` connections at once on `listener` (`what` names it in logs).
    pub fn new(listener: TcpListener, max: usize, timeouts: Timeouts, what: &'static str) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(max)),
            max,
            closing: Arc::new(Semaphore::new(closing_places(max))),
            timeouts,
            what,
            refused: 0,
        }
    }

    /// The next connection within the budget; connections beyond it are closed at once.
    pub async fn next(&mut self) -> Conn {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    accept_error(self.what, err).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                self.refused += 1;
                // The first refusal, then every time the count doubles: never a flood of logs.
                if self.refused.is_power_of_two() {
                    warn!(
                        listener = self.what,
                        max_connections = self.max,
                        refused = self.refused,
                        "connection limit reached: new connections are closed at once"
                    );
                }
                drop(stream);
                continue;
            };
            // Small responses (a FlightInfo, a status) go out at once.
            if let Err(err) = stream.set_nodelay(true) {
                debug!(error = %err, "cannot set TCP_NODELAY on a connection");
            }
            return Conn::new(stream, permit, Arc::clone(&self.closing), self.timeouts);
        }
    }

    /// Its connections, open or closing, for waiting until they have all ended.
    pub fn connections(&self) -> Connections {
        Connections {
            permits: Arc::clone(&self.permits),
            max: self.max,
            closing: Arc::clone(&self.closing),
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_incoming(self) -> impl futures::Stream<Item = io::Result<Conn>> + Send {
        futures::stream::unfold(self, |mut listener| async move {
            let conn = listener.next().await;
            Some((Ok(conn), listener))
        })
    }
}

/// The connections of a [`Limited`] listener, open or closing.
#[derive(Debug, Clone)]
pub struct Connections {
    permits: Arc<Semaphore>,
    max: usize,
    closing: Arc<Semaphore>,
}

impl Connections {
    /// Returns once no connection is open or closing.
    pub async fn ended(&self) {
        for (places, max) in [
            (&self.permits, self.max),
            (&self.closing, closing_places(self.max)),
        ] {
            let all = u32::try_from(max).unwrap_or(u32::MAX);
            let _ = places.acquire_many(all).await;
        }
    }

    /// How many connections are open or closing.
    pub fn open(&self) -> usize {
        let closing = closing_places(self.max) - self.closing.available_permits();
        self.max.saturating_sub(self.permits.available_permits()) + closing
    }
}

/// How many connections of a listener with a budget of `max` may be closing at once: their
/// descriptors come out of the quarter the budgets leave free.
fn closing_places(max: usize) -> usize {
    (max / 8).max(4)
}

/// An error accepting a connection: the connection's own trouble is skipped; anything else
/// (out of descriptors) is logged and accepting pauses a moment, as axum does.
async fn accept_error(what: &str, err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    error!(listener = what, error = %err, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// axum serves HTTP on a [`Limited`] listener; the connection's [`Activity`] is its "address",
/// put into every request's extensions by `into_make_service_with_connect_info::<Activity>`.
impl axum::serve::Listener for Limited {
    type Io = Conn;
    type Addr = Activity;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let conn = self.next().await;
        let activity = conn.activity.clone();
        (conn, activity)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Err(io::Error::other(
            "a limited listener has no address of this type; ask the TCP listener",
        ))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Limited>> for Activity {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Limited>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A layer that marks a connection busy while one of its requests is in progress (until its
/// response body ends or is dropped), for the idle timeout of [`Conn`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackRequests;

impl<S> tower_layer::Layer<S> for TrackRequests {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracked(inner)
    }
}

/// The service [`TrackRequests`] makes.
#[derive(Debug, Clone)]
pub struct Tracked<S>(S);

/// The connection a request came on: tonic's connect info (plain or TLS) or axum's.
fn activity_of<B>(request: &http::Request<B>) -> Option<Activity> {
    let extensions = request.extensions();
    extensions
        .get::<Activity>()
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TlsConnectInfo<Activity>>()
                .map(|info| info.get_ref())
        })
        .or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<Activity>>()
                .map(|info| &info.0)
        })
        .cloned()
}

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>> for Tracked<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TrackedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let busy = activity_of(&request).map(|activity| activity.begin());
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    }
}

/// A response body that keeps its connection busy until it ends or is dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    _busy: Option<Busy>,
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn budgets_stay_below_the_descriptor_limit() {
        assert_eq!(default_budgets(1024), (576, 192));
        for nofile in [16, 256, 1024, 4096, 65_536, 1 << 20, u64::MAX] {
            let (flight, http) = default_budgets(nofile);
            assert!(flight >= 1 && http >= 1, "{nofile}");
            if nofile >= 256 {
                assert!(
                    ((flight + http) as u64) < nofile.min(NOFILE_CAP),
                    "{nofile}"
                );
            }
        }
        assert_eq!(default_budgets(65_536).1, 1024);
    }

    /// Connections beyond the budget are closed at once; the listener keeps accepting, and a
    /// connection that sends nothing is closed after the handshake timeout, freeing its place.
    #[tokio::test]
    async fn the_budget_closes_extra_connections_and_idle_ones_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = Timeouts {
            handshake: Duration::from_millis(300),
            idle: Duration::from_millis(300),
        };
        let mut limited = Limited::new(listener, 2, timeouts, "test");
        // Echo whatever a connection sends, until it reads as closed.
        tokio::spawn(async move {
            loop {
                let mut conn = limited.next().await;
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let mut kept = vec![];
        for _ in 0..2 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(b"hi").await.unwrap();
            let mut buf = [0u8; 2];
            client.read_exact(&mut buf).await.unwrap();
            kept.push(client);
        }
        // The third is over the budget: closed without an answer.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"hi").await;
        let mut buf = [0u8; 2];
        let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        // The kept ones carried no request (no tracked request at all): closed in time.
        for mut client in kept {
            let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await;
            assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        }
        // Their places are free again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        again.write_all(b"ok").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    }

    /// A closed connection's last bytes reach a client that had sent bytes the node never
    /// read (an HTTP/2 window update, say). Closed at once, the socket answers the unread bytes
    /// with a reset, and the client's kernel drops what the client had not read yet.
    #[tokio::test]
    async fn a_closed_connection_delivers_its_last_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = Timeouts {
            handshake: Duration::from_secs(30),
            idle: Duration::from_secs(30),
        };
        let mut limited = Limited::new(listener, 4, timeouts, "test");
        let connections = limited.connections();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut conn = limited.next().await;
        client.write_all(&[7u8; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = vec![1u8; 64 * 1024];
        conn.write_all(&response).await.unwrap();
        conn.flush().await.unwrap();
        drop(conn);
        assert_eq!(connections.open(), 1, "a closing connection still counts");
        assert_eq!(
            limited.permits.available_permits(),
            4,
            "its budget place is free at once"
        );
        // The node has closed before the client reads.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut received = vec![];
        client
            .read_to_end(&mut received)
            .await
            .expect("the connection ends without a reset");
        assert_eq!(received.len(), response.len());
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), connections.ended())
            .await
            .expect("the closing connection ends once the client has closed");
    }

    #[tokio::test]
    async fn a_connection_is_busy_while_a_response_is_unfinished() {
        let activity = Activity::new();
        let timeouts = Timeouts {
            handshake: Duration::from_secs(1),
            idle: Duration::from_secs(2),
        };
        assert_eq!(
            activity.deadline(&timeouts),
            Some(activity.0.opened + timeouts.handshake)
        );
        let busy = activity.begin();
        assert_eq!(activity.deadline(&timeouts), None);
        drop(busy);
        let deadline = activity.deadline(&timeouts).unwrap();
        assert!(deadline >= activity.0.opened + timeouts.idle);
    }
}
