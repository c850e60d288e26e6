//! Progress of a long-running query on standard error.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use polder_federation::{Peer, Traffic};

/// Elapsed time, rows so far, and what each node has sent for the query (rows, bytes), on
/// standard error, for queries that take more than a second, when standard error is a terminal.
///
/// The line is drawn by a thread of its own: a query can keep every thread of the async
/// runtime busy for long stretches (a large join), and its progress is most wanted then.
pub(crate) struct Progress {
    rows: Arc<AtomicU64>,
    /// Set when the query ends; the thread then stops.
    done: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts counting; `peers` are the nodes of the session, by the catalog they appear as.
    pub(crate) fn start(peers: &[(String, Peer)]) -> Self {
        let rows = Arc::new(AtomicU64::new(0));
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = std::io::stderr().is_terminal().then(|| {
            let rows = Arc::clone(&rows);
            let done = Arc::clone(&done);
            // What each node had sent before this query.
            let peers: Vec<(String, Peer, Traffic)> = peers
                .iter()
                .map(|(name, peer)| (name.clone(), peer.clone(), peer.traffic()))
                .collect();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut wait = Duration::from_secs(1);
                let mut drawn = false;
                loop {
                    let (lock, ended) = &*done;
                    let mut guard = lock.lock();
                    ended.wait_while_for(&mut guard, |done| !*done, wait);
                    if *guard {
                        if drawn {
                            eprint!("\r\x1b[2K");
                        }
                        return;
                    }
                    drop(guard);
                    let line = progress_line(
                        started.elapsed(),
                        rows.load(Ordering::Relaxed),
                        peers.iter().map(|(name, peer, before)| {
                            let now = peer.traffic();
                            (
                                name.as_str(),
                                now.rows.saturating_sub(before.rows),
                                now.bytes.saturating_sub(before.bytes),
                            )
                        }),
                    );
                    eprint!("\r\x1b[2K{line}");
                    drawn = true;
                    wait = Duration::from_millis(200);
                }
            })
        });
        Self { rows, done, thread }
    }

    pub(crate) fn add(&self, rows: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

/// Stops when the query ends, fails or is cancelled, and clears the line.
impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let (lock, ended) = &*self.done;
            *lock.lock() = true;
            ended.notify_all();
            let _ = thread.join();
        }
    }
}

/// `2.4 s, 120 rows, 3.1 MB received; amsterdam: 80000 rows, 2.0 MB; utrecht: ...`: the nodes
/// that have sent something.
fn progress_line<'a>(
    elapsed: Duration,
    rows: u64,
    peers: impl Iterator<Item = (&'a str, u64, u64)>,
) -> String {
    let mut total = 0;
    let mut each = String::new();
    for (name, rows, bytes) in peers {
        if rows == 0 && bytes == 0 {
            continue;
        }
        total += bytes;
        each.push_str(&format!("; {name}: {rows} rows, {}", human_bytes(bytes)));
    }
    format!(
        "{:.1} s, {rows} rows, {} received{each}",
        elapsed.as_secs_f64(),
        human_bytes(total)
    )
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_nodes_that_sent_something() {
        let line = progress_line(
            Duration::from_millis(2400),
            120,
            [("amsterdam", 80_000, 2_000_000), ("utrecht", 0, 0)].into_iter(),
        );
        assert_eq!(
            line,
            "2.4 s, 120 rows, 2.0 MB received; amsterdam: 80000 rows, 2.0 MB"
        );
    }
}
