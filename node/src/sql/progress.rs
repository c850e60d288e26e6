//! Progress of a long-running query on standard error.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Elapsed time and rows so far on standard error, for queries that take more than a second,
/// when standard error is a terminal.
pub(crate) struct Progress {
    rows: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start() -> Self {
        let rows = Arc::new(AtomicU64::new(0));
        let task = std::io::stderr().is_terminal().then(|| {
            let rows = Arc::clone(&rows);
            tokio::spawn(async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_secs(1)).await;
                loop {
                    eprint!(
                        "\r\x1b[2K{:.1} s, {} rows",
                        started.elapsed().as_secs_f64(),
                        rows.load(Ordering::Relaxed)
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Self { rows, task }
    }

    pub(crate) fn add(&self, rows: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    pub(crate) fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}
