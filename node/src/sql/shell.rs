//! The interactive shell: line editing and history (saved as it goes), statements that span
//! lines, meta-commands, and Ctrl-C that cancels the running query and keeps the session.
//!
//! Each statement runs as a task of its own while the shell waits for it or for Ctrl-C. Ctrl-C
//! is watched by a thread of its own: a query can keep every thread of the async runtime busy
//! for long stretches (a large join computing a batch), and Ctrl-C is most wanted then. A
//! cancelled query is dropped; one busy in such a stretch stops at its end, and the session
//! is free again then (the next statement waits for it, saying so).

use std::path::PathBuf;
use std::sync::Arc;

use rustyline::error::ReadlineError;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Mutex, watch};

use super::errors;
use super::script::{self, Splitter};
use super::session::{Flow, Session};

/// Runs the shell until `\q`, `.quit` or end of input. Returns whether a query was cancelled
/// (its work may still be stopping).
pub(crate) async fn run(session: Arc<Mutex<Session>>) -> anyhow::Result<bool> {
    let mut cancelled = false;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".polder_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    // While a query runs the terminal is not in raw mode: Ctrl-C arrives as a signal. At the
    // prompt, line editing reads it as a key.
    let mut interrupts = interrupts()?;
    eprintln!("polder sql: statements end with ';'. .help lists the commands, \\q quits.");
    let mut splitter = Splitter::default();
    // The lines of the entry under way, for the history.
    let mut entry = String::new();
    loop {
        let prompt = if splitter.is_pending() {
            "     -> "
        } else {
            "polder> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                splitter.clear();
                entry.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err.into()),
        };
        if entry.len() + line.len() >= super::MAX_SCRIPT_BYTES {
            eprintln!(
                "error: the statement is longer than {} bytes; it is dropped",
                super::MAX_SCRIPT_BYTES
            );
            splitter.clear();
            entry.clear();
            continue;
        }
        if !entry.is_empty() {
            entry.push('\n');
        }
        entry.push_str(&line);
        let quit = script::is_quit(&line);
        let items = if quit {
            vec![]
        } else {
            splitter.push_line(&line)
        };
        if quit || !splitter.is_pending() {
            let text = std::mem::take(&mut entry);
            if !text.trim().is_empty() {
                // Saved at once: a shell killed later keeps what was typed.
                let added = editor.add_history_entry(text.trim()).unwrap_or(false);
                if added && let Some(path) = &history {
                    let _ = editor.append_history(path);
                }
            }
        }
        if quit {
            break;
        }
        for item in items {
            // A Ctrl-C pressed before this statement is not meant for it.
            interrupts.borrow_and_update();
            let free = match Arc::clone(&session).try_lock_owned() {
                Ok(free) => free,
                Err(_) => {
                    eprintln!("waiting for the cancelled query to stop (Ctrl-C gives up)");
                    tokio::select! {
                        free = Arc::clone(&session).lock_owned() => free,
                        () = interrupted(&mut interrupts) => break,
                    }
                }
            };
            let mut task = tokio::spawn(async move {
                let mut session = free;
                session.run_item(&item).await
            });
            tokio::select! {
                joined = &mut task => match joined {
                    Ok(Ok(Flow::Continue)) => {}
                    Ok(Ok(Flow::Quit)) => return Ok(cancelled),
                    Ok(Err(err)) => eprintln!("error: {}", errors::chain(&err)),
                    Err(err) => eprintln!("error: internal: the statement's task failed: {err}"),
                },
                () = interrupted(&mut interrupts) => {
                    task.abort();
                    cancelled = true;
                    eprintln!("cancelled");
                    // What else the line held is not run either.
                    break;
                }
            }
        }
    }
    Ok(cancelled)
}

/// Counts the interrupts (SIGINT) received, on a thread of its own.
fn interrupts() -> anyhow::Result<watch::Receiver<u64>> {
    let (sender, receiver) = watch::channel(0);
    let (ready, listening) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("polder-sql-interrupts".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready.send(Err(err));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut signals = match signal(SignalKind::interrupt()) {
                    Ok(signals) => {
                        let _ = ready.send(Ok(()));
                        signals
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                while signals.recv().await.is_some() {
                    sender.send_modify(|count| *count += 1);
                }
            });
        })?;
    listening
        .recv()
        .map_err(|_| anyhow::anyhow!("the Ctrl-C listener did not start"))??;
    Ok(receiver)
}

/// Returns at the next interrupt (never, when interrupts can no longer arrive).
async fn interrupted(interrupts: &mut watch::Receiver<u64>) {
    if interrupts.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
