//! The worker's side: `polder sparql-worker` loads the catalog, evaluates one request
//! within its address-space and CPU limits, and writes its header and result to stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use oxigraph::io::{RdfFormat, RdfParser};
use oxigraph::model::Triple;

use super::{Header, Request};
use crate::error::SparqlError;
use crate::sparql::{
    Answer, AnswerBody, EVALUATION_STACK_BYTES, SparqlLimits, evaluation_dataset, evaluation_error,
    prepare, serialize_results,
};

/// The worker's main: `--catalog FILE --memory-limit BYTES --cpu-seconds N`, one request on
/// stdin, one response on stdout.
pub fn run(args: &[String]) -> ExitCode {
    let mut catalog = None;
    let mut memory = None;
    let mut cpu = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--catalog" => catalog = iter.next().map(PathBuf::from),
            "--memory-limit" => memory = iter.next().and_then(|v| v.parse::<u64>().ok()),
            "--cpu-seconds" => cpu = iter.next().and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    let Some(catalog) = catalog else {
        eprintln!("usage: sparql-worker --catalog FILE [--memory-limit BYTES] [--cpu-seconds N]");
        return ExitCode::from(2);
    };
    if let Some(bytes) = memory
        && let Err(e) = rlimit::Resource::AS.set(bytes, bytes)
    {
        eprintln!("sparql-worker: cannot limit memory: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(seconds) = cpu
        && let Err(e) = rlimit::Resource::CPU.set(seconds, seconds + 1)
    {
        eprintln!("sparql-worker: cannot limit CPU time: {e}");
        return ExitCode::FAILURE;
    }
    // Parsing and evaluation recurse once or more per level of the query: on a thread with
    // a large stack (but well within the address-space limit).
    let stack = memory.map_or(EVALUATION_STACK_BYTES, |bytes| {
        EVALUATION_STACK_BYTES.min(usize::try_from(bytes / 4).unwrap_or(usize::MAX))
    });
    let served = std::thread::Builder::new()
        .name("sparql-worker".into())
        .stack_size(stack)
        .spawn(move || serve_one(&catalog))
        .map_err(|e| SparqlError::Internal(format!("cannot start the query thread: {e}")))
        .and_then(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err(SparqlError::Internal("the query thread panicked".into())))
        });
    let (header, body) = match served {
        Ok(answer) => {
            let AnswerBody::Bytes(body) = answer.body else {
                unreachable!("a worker serialises in memory")
            };
            (
                Header::Ok {
                    content_type: answer.content_type.into(),
                },
                body,
            )
        }
        Err(e) => (
            Header::Error {
                kind: e.kind(),
                message: e.to_string(),
            },
            Vec::new(),
        ),
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &header)
        .map_err(std::io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.write_all(&body))
        .and_then(|()| out.flush());
    if written.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve_one(catalog: &Path) -> Result<Answer, SparqlError> {
    let mut request = Vec::new();
    std::io::stdin()
        .take(16 * 1024 * 1024)
        .read_to_end(&mut request)
        .map_err(|e| SparqlError::Internal(e.to_string()))?;
    let request: Request =
        serde_json::from_slice(&request).map_err(|e| SparqlError::Internal(e.to_string()))?;
    let file = std::fs::read(catalog).map_err(|e| SparqlError::Internal(e.to_string()))?;
    // Parsed into a plain dataset, terms as written: a store would rename blank nodes and
    // normalise derived XSD types, so answers would differ from the catalog.
    let triples = RdfParser::from_format(RdfFormat::NTriples)
        .for_slice(&file)
        .map(|quad| quad.map(Triple::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SparqlError::Internal(e.to_string()))?;
    let dataset = evaluation_dataset(&triples, &request.graph);
    drop(triples);
    // The node checked the query's length and nesting; syntax errors and updates are found
    // here, so that the node never runs the parser.
    let prepared = prepare(&request.query, None, &request.graph, request.dataset)?;
    let results = prepared
        .on_queryable_dataset(&dataset)
        .execute()
        .map_err(evaluation_error)?;
    let limits = SparqlLimits {
        max_results: request.max_results,
        max_result_bytes: request.max_result_bytes,
        ..SparqlLimits::default()
    };
    serialize_results(results, request.accept.as_deref(), &limits)
}
