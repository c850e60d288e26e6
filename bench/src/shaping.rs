//! A shaping TCP proxy: the link between two cities, on loopback. Each direction of the link
//! carries bytes at a set bandwidth, shared by every connection through the proxy, and
//! delivers them half a round-trip time after they were sent.
//!
//! It shapes what the applications see (gRPC, HTTP/2 flow control, Flight's request and
//! response round trips), not TCP itself: the kernel on either side still sees a loopback
//! connection, so TCP's own slow start and loss recovery are not modelled.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A link's bandwidth (each direction) and round-trip time, written `100mbit,20ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Bits per second in each direction.
    pub bits_per_second: f64,
    /// Round-trip time: each direction delays by half of it.
    pub rtt: Duration,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Mbit/s, {} ms round trip",
            self.bits_per_second / 1e6,
            self.rtt.as_millis()
        )
    }
}

impl FromStr for Link {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (rate, rtt) = text
            .split_once(',')
            .ok_or_else(|| format!("expected BANDWIDTH,RTT such as 100mbit,20ms, got {text:?}"))?;
        let rate = rate.trim().to_ascii_lowercase();
        let (number, unit) = rate.split_at(
            rate.find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rate.len()),
        );
        let number: f64 = number
            .parse()
            .map_err(|_| format!("bandwidth {rate:?} does not start with a number"))?;
        let scale = match unit {
            "gbit" => 1e9,
            "mbit" => 1e6,
            "kbit" => 1e3,
            other => return Err(format!("bandwidth unit {other:?}: use kbit, mbit or gbit")),
        };
        let rtt = humantime::parse_duration(rtt.trim())
            .map_err(|e| format!("round-trip time {rtt:?}: {e}"))?;
        if number <= 0.0 {
            return Err("bandwidth must be positive".into());
        }
        Ok(Link {
            bits_per_second: number * scale,
            rtt,
        })
    }
}

/// One direction of a link: when it is next free to send.
#[derive(Debug)]
struct Direction {
    link: Link,
    free_at: Mutex<Instant>,
}

impl Direction {
    /// When `bytes` sent now arrive: after the bytes queued before them have been sent, their
    /// own transmission time, and half the round trip.
    fn arrival(&self, bytes: usize) -> Instant {
        let transmit = Duration::from_secs_f64(bytes as f64 * 8.0 / self.link.bits_per_second);
        let mut free_at = self.free_at.lock();
        let sent = (*free_at).max(Instant::now()) + transmit;
        *free_at = sent;
        sent + self.link.rtt / 2
    }
}

/// A proxy in front of `upstream` on a free loopback port; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    down: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Chunks in flight per direction and connection; a full queue stops reading from the sender,
/// as a full link does.
const QUEUE: usize = 256;
const CHUNK: usize = 64 * 1024;

impl Proxy {
    /// Starts a proxy shaping every connection to `upstream` as `link`.
    pub async fn start(upstream: SocketAddr, link: Link) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let forward = Arc::new(Direction {
            link,
            free_at: Mutex::new(Instant::now()),
        });
        let back = Arc::new(Direction {
            link,
            free_at: Mutex::new(Instant::now()),
        });
        let down = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&down);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (forward, back) = (Arc::clone(&forward), Arc::clone(&back));
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    if let Err(err) = relay(client, upstream, forward, back, counted).await {
                        eprintln!("shaping proxy: {err:#}");
                    }
                });
            }
        });
        Ok(Self { addr, down, task })
    }

    /// Bytes the upstream has sent to clients through the proxy so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    forward: Arc<Direction>,
    back: Arc<Direction>,
    down: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream)
        .await
        .with_context(|| format!("connecting to {upstream}"))?;
    for stream in [&client, &server] {
        stream.set_nodelay(true)?;
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = tokio::spawn(pump(client_read, server_write, forward, None));
    let down = tokio::spawn(pump(server_read, client_write, back, Some(down)));
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Carries bytes from `from` to `to` through `direction`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Arc<Direction>,
    counter: Option<Arc<AtomicU64>>,
) {
    let (sender, mut receiver) = mpsc::channel::<(Instant, Bytes)>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = receiver.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(counter) = &counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        let chunk = Bytes::copy_from_slice(&buffer[..n]);
        if sender.send((direction.arrival(n), chunk)).await.is_err() {
            break;
        }
    }
    drop(sender);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links() {
        let link: Link = "100mbit,20ms".parse().unwrap();
        assert_eq!(link.bits_per_second, 100e6);
        assert_eq!(link.rtt, Duration::from_millis(20));
        assert_eq!(
            "1.5gbit, 5ms".parse::<Link>().unwrap().bits_per_second,
            1.5e9
        );
        assert!("100mb,20ms".parse::<Link>().is_err());
        assert!("100mbit".parse::<Link>().is_err());
        assert!("0mbit,1ms".parse::<Link>().is_err());
    }

    #[tokio::test]
    async fn delays_and_limits_the_bytes_it_carries() {
        // An echo server behind a 8 Mbit/s, 40 ms link: 100 KB takes 100 ms to send one way,
        // plus 20 ms there and 20 ms back, so a full echo takes at least 140 ms (on loopback
        // alone, well under a millisecond).
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = echo.accept().await.unwrap();
            let (mut read, mut write) = stream.into_split();
            tokio::io::copy(&mut read, &mut write).await.unwrap();
        });
        let link: Link = "8mbit,40ms".parse().unwrap();
        let proxy = Proxy::start(upstream, link).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let payload = vec![7u8; 100_000];
        let start = std::time::Instant::now();
        let (mut read, mut write) = stream.split();
        let send = async {
            write.write_all(&payload).await.unwrap();
        };
        let mut echoed = vec![0u8; payload.len()];
        let receive = read.read_exact(&mut echoed);
        let (_, received) = tokio::join!(send, receive);
        received.unwrap();
        assert_eq!(echoed, payload);
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
    }
}
