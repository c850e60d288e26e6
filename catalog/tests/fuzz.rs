//! Fuzz target for SPARQL query text through [`Catalog::query`] on an in-process catalog: the
//! length limit and the nesting check (`nesting.rs`) first, and oxigraph's parser and
//! evaluator only on what the check passes, on the catalog's own large-stack thread.
//!
//! Each target is a `bolero` harness. Under `cargo test` it replays the inputs in
//! `tests/__fuzz__/<target>/{corpus,crashes}` and then generates inputs for [`CI_TIME`];
//! `BOLERO_RANDOM_TEST_TIME_MS` (or `BOLERO_RANDOM_ITERATIONS`) runs it longer, and
//! `cargo +nightly bolero test` runs the same target under libFuzzer, coverage-guided (see
//! "Fuzzing" in docs/security-guide.md). Inputs that once failed stay below as regression
//! tests.

use std::sync::OnceLock;
use std::time::Duration;

use oxigraph::model::{Literal, NamedNode, Triple};
use polder_catalog::{Catalog, Iris, SparqlError, SparqlLimits};

/// How long each target generates inputs under plain `cargo test`.
const CI_TIME: Duration = Duration::from_secs(3);

/// An in-process catalog of a few triples, with the default depth and length limits and a
/// short timeout, and the runtime to ask it on.
fn catalog() -> &'static (tokio::runtime::Runtime, Catalog) {
    static CATALOG: OnceLock<(tokio::runtime::Runtime, Catalog)> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let iri = |s: &str| NamedNode::new(format!("https://example.org/{s}")).unwrap();
        let mut triples = Vec::new();
        for i in 0..8 {
            triples.push(Triple::new(iri(&format!("d{i}")), iri("p"), iri("Dataset")));
            triples.push(Triple::new(
                iri(&format!("d{i}")),
                iri("title"),
                Literal::new_language_tagged_literal(format!("set {i}"), "nl").unwrap(),
            ));
            triples.push(Triple::new(
                iri(&format!("d{i}")),
                iri("next"),
                iri(&format!("d{}", (i + 1) % 8)),
            ));
        }
        let limits = SparqlLimits {
            timeout: Duration::from_secs(2),
            max_results: 1000,
            queue_timeout: Duration::from_secs(60),
            ..SparqlLimits::default()
        };
        let catalog =
            Catalog::new(triples, Iris::new("https://example.org"), vec![], limits).unwrap();
        (rt, catalog)
    })
}

/// A query: never a panic nor an abort (a parser or evaluator overflowing its stack would end
/// the test process); the answer is a result or a typed refusal, and a query that passed the
/// nesting check never runs out of time on this small catalog unless it is a join.
fn query(text: &str) {
    let (rt, catalog) = catalog();
    match rt.block_on(catalog.query(text, None)) {
        Ok(_)
        | Err(SparqlError::TooLong { .. })
        | Err(SparqlError::TooDeep { .. })
        | Err(SparqlError::Syntax(_))
        | Err(SparqlError::Update)
        | Err(SparqlError::BadRequest(_))
        | Err(SparqlError::Unsupported(_))
        | Err(SparqlError::TooManyResults(_))
        | Err(SparqlError::Timeout(_)) => {}
        Err(other) => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn fuzz_sparql_text() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| {
            query(&String::from_utf8_lossy(bytes));
        });
}

/// Pieces of SPARQL: every kind of bracket, chain operator and group element the nesting
/// check counts, and everything it must skip (strings, comments, IRIs, escapes).
const SPARQL_TOKENS: &[&str] = &[
    "SELECT",
    "*",
    "?s",
    "?p",
    "?o",
    "?x",
    "WHERE",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ".",
    ";",
    ",",
    "a",
    "<https://example.org/p>",
    "<https://example.org/d1>",
    "<",
    ">",
    "<=",
    "=",
    "!=",
    "ASK",
    "CONSTRUCT",
    "DESCRIBE",
    "OPTIONAL",
    "UNION",
    "MINUS",
    "FILTER",
    "BIND",
    "AS",
    "VALUES",
    "GRAPH",
    "SERVICE",
    "<http://127.0.0.1:9/>",
    "EXISTS",
    "NOT EXISTS",
    "||",
    "&&",
    "!",
    "+",
    "-",
    "/",
    "^",
    "|",
    "?",
    "1",
    "1.5e300",
    "-0",
    "true",
    "\"x\"",
    "'x'",
    "\"\"\"a\nb\"\"\"",
    "'''c'''",
    "\"\\\"\"",
    "\"x\"@nl",
    "\"1\"^^<http://www.w3.org/2001/XMLSchema#integer>",
    "# comment\n",
    "\\u007B",
    "\\u0028",
    "\\U0000005B",
    "\\u003C",
    "PREFIX ex: <https://example.org/>",
    "ex:p",
    "ex:",
    ":x",
    "_:b",
    "LIMIT 1",
    "OFFSET 1",
    "ORDER BY",
    "GROUP BY",
    "HAVING",
    "COUNT(",
    "SUM(",
    "GROUP_CONCAT(",
    "REGEX(",
    "STR(",
    "CONCAT(",
    "IF(",
    "COALESCE(",
    "IRI(",
    "SUBSTR(",
    "STRLEN(",
    "DISTINCT",
    "REDUCED",
    "FROM",
    "NAMED",
    "INSERT DATA",
    "DELETE WHERE",
    "LOAD",
    "CLEAR ALL",
    "BASE <x:>",
    "(?s ?p ?o)",
    "( )",
    "\n",
    "\0",
    "é",
];

/// A query from `(token, repeat)` pairs: a repeat byte of 240 or more repeats the token
/// 2^(repeat - 240) times (up to 32768), for deep nesting and long chains.
fn grammar_query(template: u8, pieces: &[(u8, u8)]) -> String {
    const TEMPLATES: &[&str] = &[
        "{}",
        "SELECT * WHERE { {} }",
        "SELECT * WHERE { ?s ?p ?o FILTER ( {} ) }",
        "ASK { ?s {} ?o }",
        "SELECT ( {} AS ?v ) WHERE { }",
        "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o . {} }",
    ];
    let mut body = String::new();
    for &(token, repeat) in pieces {
        let token = SPARQL_TOKENS[usize::from(token) % SPARQL_TOKENS.len()];
        let times = if repeat >= 240 {
            1usize << (repeat - 240)
        } else {
            1
        };
        for _ in 0..times {
            body.push_str(token);
            body.push(' ');
        }
    }
    TEMPLATES[usize::from(template) % TEMPLATES.len()].replace("{}", &body)
}

#[test]
fn fuzz_sparql_grammar() {
    bolero::check!()
        .with_type::<(u8, Vec<(u8, u8)>)>()
        .with_test_time(CI_TIME)
        .for_each(|(template, pieces)| {
            query(&grammar_query(*template, pieces));
        });
}
