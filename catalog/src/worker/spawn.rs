//! The node's side of a SPARQL worker: start it with the query's limits, read its header,
//! and stream its result to the client, killing it at the deadline.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::{Header, Request, WorkerCommand};
use crate::error::SparqlError;
use crate::sparql::{Answer, AnswerBody, SparqlLimits};

/// Longest header line read from a worker (its message quotes at most a syntax error).
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// Size of the chunks a result is streamed in.
const CHUNK_BYTES: usize = 64 * 1024;

/// How a worker ended, as its watcher saw it.
#[derive(Debug)]
enum Exit {
    /// It exited by itself.
    Exited(std::io::Result<ExitStatus>),
    /// It was killed at the query's time limit.
    Deadline,
    /// It was killed because its result was no longer wanted.
    Dropped,
}

/// Runs one query in a fresh worker, killed when the query's time limit passes (counted from
/// now, including the time the client takes to read the result). The answer streams from the
/// worker's output; `permit` (the query's evaluation slot) is held until the worker has exited
/// or been killed.
pub(crate) async fn evaluate(
    command: &WorkerCommand,
    catalog_file: &Path,
    request: Request,
    limits: &SparqlLimits,
    permit: OwnedSemaphorePermit,
) -> Result<Answer, SparqlError> {
    let timeout = limits.timeout;
    let deadline = Instant::now() + timeout;
    let mut child = start(command, catalog_file, timeout)?;
    let request = serde_json::to_vec(&request).expect("a request serialises");
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    // The watcher owns the worker and the slot: it kills the worker at the deadline, or when
    // `cancel` is dropped (the request or its result is abandoned), and reports how it ended.
    let (cancel, cancelled) = oneshot::channel::<()>();
    let (report, mut exit) = oneshot::channel();
    tokio::spawn(watch(child, permit, deadline, cancelled, report));

    let mut output = BufReader::with_capacity(CHUNK_BYTES, stdout);
    let exchange = Exchange { deadline, timeout };
    // On an error, dropping `cancel` kills the worker.
    let content_type = exchange
        .header(stdin, &request, &mut output, &mut exit)
        .await?;
    let body = Body {
        output,
        exit: Some(exit),
        _cancel: cancel,
        sent: 0,
        max: limits.max_result_bytes,
    };
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.next_chunk().await.map(|chunk| (chunk, body))
    });
    Ok(Answer {
        content_type: static_media_type(&content_type),
        body: AnswerBody::Stream(Box::pin(stream)),
    })
}

/// Starts a worker on `catalog_file` with the command's memory limit and a CPU limit a little
/// over `timeout`.
fn start(
    command: &WorkerCommand,
    catalog_file: &Path,
    timeout: Duration,
) -> Result<Child, SparqlError> {
    tokio::process::Command::new(&command.program)
        .args(&command.args)
        .arg("--catalog")
        .arg(catalog_file)
        .arg("--memory-limit")
        .arg(command.memory_limit_bytes.to_string())
        .arg("--cpu-seconds")
        .arg((timeout.as_secs() + 2).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| internal("cannot start", e))
}

fn internal(what: &str, e: std::io::Error) -> SparqlError {
    SparqlError::Internal(format!("SPARQL worker: {what}: {e}"))
}

/// The time limit of one exchange with a worker.
struct Exchange {
    deadline: Instant,
    timeout: Duration,
}

impl Exchange {
    /// Sends the request and reads the worker's header: the media type of the result that
    /// follows, or the error the worker reported, or why there is no header.
    async fn header(
        &self,
        mut stdin: ChildStdin,
        request: &[u8],
        output: &mut BufReader<ChildStdout>,
        exit: &mut oneshot::Receiver<Exit>,
    ) -> Result<String, SparqlError> {
        let head = async {
            stdin.write_all(request).await?;
            drop(stdin);
            let mut line = Vec::new();
            output
                .take(MAX_HEADER_BYTES)
                .read_until(b'\n', &mut line)
                .await?;
            Ok::<_, std::io::Error>(line)
        };
        let line = match tokio::time::timeout_at(self.deadline, head).await {
            Err(_) => return Err(SparqlError::Timeout(self.timeout)),
            Ok(Ok(line)) if line.ends_with(b"\n") => line,
            Ok(written) => return Err(self.no_header(written, exit).await),
        };
        let header: Header = serde_json::from_slice(&line)
            .map_err(|e| SparqlError::Internal(format!("SPARQL worker: bad header: {e}")))?;
        match header {
            Header::Ok { content_type } => Ok(content_type),
            Header::Error { kind, message } => {
                Err(SparqlError::reported(kind, message, self.timeout))
            }
        }
    }

    /// The error of a worker that died (or closed its input) before it could answer.
    async fn no_header(
        &self,
        written: std::io::Result<Vec<u8>>,
        exit: &mut oneshot::Receiver<Exit>,
    ) -> SparqlError {
        match tokio::time::timeout_at(self.deadline, exit).await {
            Ok(Ok(Exit::Exited(Ok(status)))) if !status.success() => died(status),
            Ok(Ok(Exit::Deadline)) | Err(_) => SparqlError::Timeout(self.timeout),
            _ => match written {
                Err(e) => internal("exchange", e),
                Ok(_) => SparqlError::Internal("SPARQL worker: no answer".into()),
            },
        }
    }
}

/// Owns a worker and its evaluation slot until the worker exits, the deadline passes, or
/// `cancelled` resolves (its sender is dropped); then reports how it ended.
async fn watch(
    mut child: Child,
    permit: OwnedSemaphorePermit,
    deadline: Instant,
    mut cancelled: oneshot::Receiver<()>,
    report: oneshot::Sender<Exit>,
) {
    let exit = tokio::select! {
        status = child.wait() => Exit::Exited(status),
        () = tokio::time::sleep_until(deadline) => Exit::Deadline,
        _ = &mut cancelled => Exit::Dropped,
    };
    if !matches!(exit, Exit::Exited(_)) {
        let _ = child.kill().await;
    }
    if let Exit::Exited(Ok(status)) = &exit
        && !status.success()
    {
        warn!(%status, "SPARQL worker stopped without finishing");
    }
    drop(permit);
    let _ = report.send(exit);
}

/// The error of a worker that died before its header: almost always killed at a limit (the
/// address space, the CPU time), or aborted by a stack overflow.
fn died(status: ExitStatus) -> SparqlError {
    warn!(%status, "SPARQL worker died without an answer");
    SparqlError::ResourceLimit(
        "the query was stopped: it needed more memory, CPU time or stack than a query may use"
            .into(),
    )
}

/// The rest of a worker's output after its header, read in chunks as the client takes them.
struct Body {
    output: BufReader<ChildStdout>,
    /// How the worker ended; taken at the end of its output.
    exit: Option<oneshot::Receiver<Exit>>,
    /// Dropped with the body: kills a worker whose result is abandoned.
    _cancel: oneshot::Sender<()>,
    sent: usize,
    max: usize,
}

impl Body {
    /// The next chunk; an error if the worker did not finish its output (killed at the time
    /// limit, or dead), which cuts the response; None at the end.
    async fn next_chunk(&mut self) -> Option<std::io::Result<bytes::Bytes>> {
        let exit = self.exit.as_mut()?;
        let mut chunk = vec![0; CHUNK_BYTES];
        let read = match self.output.read(&mut chunk).await {
            Ok(0) => {
                // End of output: the worker has exited, or is exiting.
                let ended = exit.await;
                self.exit = None;
                return match ended {
                    Ok(Exit::Exited(Ok(status))) if status.success() => None,
                    Ok(Exit::Deadline) => Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the SPARQL query reached its time limit while its result was sent",
                    ))),
                    _ => Some(Err(std::io::Error::other(
                        "the SPARQL worker stopped before the end of its result",
                    ))),
                };
            }
            Ok(read) => read,
            Err(e) => {
                self.exit = None;
                return Some(Err(e));
            }
        };
        self.sent += read;
        if self.sent > self.max {
            // The worker checks the limit itself; this only guards against a faulty one.
            self.exit = None;
            return Some(Err(std::io::Error::other(
                "the SPARQL result is larger than the limit",
            )));
        }
        chunk.truncate(read);
        Some(Ok(chunk.into()))
    }
}

/// The media types answers use, as static strings.
fn static_media_type(media_type: &str) -> &'static str {
    use oxigraph::sparql::results::QueryResultsFormat;
    for format in [
        QueryResultsFormat::Json,
        QueryResultsFormat::Xml,
        QueryResultsFormat::Csv,
        QueryResultsFormat::Tsv,
    ] {
        if format.media_type() == media_type {
            return format.media_type();
        }
    }
    for kind in crate::serialize::RdfKind::ALL {
        if kind.media_type() == media_type {
            return kind.media_type();
        }
    }
    "application/octet-stream"
}
