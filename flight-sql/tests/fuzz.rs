//! Fuzz targets for what a client sends the Flight SQL service: SQL text (planned by
//! [`QueryEngine::plan`] on the node's query runtime), Flight SQL commands in descriptors,
//! tickets and actions (through [`CheckedCommands`] and the service, as on the wire), and
//! statement handles ([`StatementHandle::decode`]).
//!
//! Each target is a `bolero` harness. Under `cargo test` it replays the inputs in
//! `tests/__fuzz__/<target>/{corpus,crashes}` and then generates inputs for [`CI_TIME`];
//! `BOLERO_RANDOM_TEST_TIME_MS` (or `BOLERO_RANDOM_ITERATIONS`) runs it longer, and
//! `cargo +nightly bolero test` runs the same target under libFuzzer, coverage-guided (see
//! "Fuzzing" in docs/security-guide.md). Inputs that once failed stay below as regression
//! tests.

use std::sync::OnceLock;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, Any,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate, ProstMessageExt,
    TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, Ticket};
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use polder_flight_sql::wire::CheckedCommands;
use polder_flight_sql::{
    Error, FlightSqlConfig, PolderFlightSqlService, QueryEngine, QueryLimits, QueryRuntime,
    StatementHandle,
};
use prost::Message;
use tonic::{Code, Request};

/// How long each target generates inputs under plain `cargo test`.
const CI_TIME: Duration = Duration::from_secs(3);

/// A node's query engine and Flight SQL service over one table `t(a BIGINT, b VARCHAR)`,
/// planning on a [`QueryRuntime`] as the node does. One per test binary.
struct Node {
    rt: tokio::runtime::Runtime,
    engine: QueryEngine,
    service: CheckedCommands<PolderFlightSqlService>,
    _query_runtime: QueryRuntime,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let limits = QueryLimits {
            timeout: Duration::from_secs(5),
            queue_timeout: Duration::from_secs(60),
            ..QueryLimits::default()
        };
        let query_runtime = QueryRuntime::new(&limits).unwrap();
        let config = polder_flight_sql::session_config()
            .with_default_catalog_and_schema("testcity", "public")
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        rt.block_on(async {
            ctx.sql("CREATE TABLE t AS SELECT value AS a, concat('v', value) AS b FROM generate_series(1, 100)")
                .await?
                .collect()
                .await
        })
        .unwrap();
        let engine = QueryEngine::new(ctx, limits).with_executor(query_runtime.handle());
        let service =
            PolderFlightSqlService::new(engine.clone(), FlightSqlConfig::default()).unwrap();
        Node {
            rt,
            engine,
            service: CheckedCommands(service),
            _query_runtime: query_runtime,
        }
    })
}

/// Writes the statement about to be planned to `$POLDER_FUZZ_IN_FLIGHT/<test>.sql` (as a Rust
/// string literal), when that variable names a folder: a stack overflow aborts the process
/// before any harness can report its input, and this file then holds it (`scripts/test` prints
/// it when `cargo test` fails).
fn record_in_flight(sql: &str) {
    let Some(dir) = std::env::var_os("POLDER_FUZZ_IN_FLIGHT") else {
        return;
    };
    let name = std::thread::current()
        .name()
        .unwrap_or("fuzz")
        .replace("::", "-");
    let path = std::path::Path::new(&dir).join(format!("{name}.sql"));
    // Best effort: the folder is created by the caller; a write error loses only this record.
    let _ = std::fs::write(path, format!("{sql:?}\n"));
}

/// SQL text to plan: never a panic; a plan is read-only (no DDL, DML, `COPY` or statement
/// anywhere in it, subqueries included); a refusal is one of the node's typed errors.
fn plan(sql: &str) {
    record_in_flight(sql);
    let node = node();
    // A refusal (a timeout too: on a loaded machine planning can take seconds) is typed.
    if let Ok(plan) = node.rt.block_on(node.engine.plan(sql)) {
        plan.apply_with_subqueries(|p| {
            assert!(
                !matches!(
                    p,
                    LogicalPlan::Dml(_)
                        | LogicalPlan::Ddl(_)
                        | LogicalPlan::Copy(_)
                        | LogicalPlan::Statement(_)
                ),
                "planned a statement that writes or changes the session: {sql:?}"
            );
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
    }
}

#[test]
fn fuzz_sql_text() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| plan(&String::from_utf8_lossy(bytes)));
}

/// Pieces of SQL for grammar-shaped statements: keywords, the table's columns and others,
/// literals at the edges of their types, operators, placeholders, and what starts comments
/// and strings.
const SQL_TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "t",
    "a",
    "b",
    "c",
    "t.a",
    "x.b",
    "(",
    ")",
    ",",
    "*",
    "+",
    "-",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "<",
    ">=",
    "AND",
    "OR",
    "NOT",
    "1",
    "0",
    "-1",
    "1.5e308",
    "9223372036854775807",
    "-9223372036854775808",
    "'x'",
    "''",
    "NULL",
    "TRUE",
    "?",
    "$1",
    "$2",
    "$0",
    "$99999999999",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "OFFSET",
    "UNION",
    "ALL",
    "EXCEPT",
    "INTERSECT",
    "JOIN",
    "LEFT JOIN",
    "CROSS JOIN",
    "ON",
    "USING",
    "AS",
    "x",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST(",
    "TRY_CAST(",
    "AS BIGINT)",
    "AS VARCHAR)",
    "AS DECIMAL(38,10))",
    "::INT",
    "count(",
    "sum(",
    "avg(",
    "min(",
    "max(",
    "count(*)",
    "IN",
    "EXISTS",
    "WITH",
    "RECURSIVE",
    "OVER (",
    "PARTITION BY",
    "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW",
    "VALUES",
    "DISTINCT",
    "HAVING",
    "BETWEEN",
    "LIKE",
    "ILIKE",
    "'%'",
    "IS",
    "IS NOT",
    "INTERVAL",
    "'1 day'",
    "DATE '2024-02-29'",
    "TIMESTAMP '1970-01-01T00:00:00Z'",
    "[",
    "]",
    "[1,2]",
    "make_array(",
    "unnest(",
    "generate_series(",
    "range(",
    "struct(",
    "named_struct(",
    "abs(",
    "substr(",
    "regexp_replace(",
    "'(a|b)*c'",
    "date_trunc(",
    "'month'",
    "now()",
    "coalesce(",
    "nullif(",
    "array_agg(",
    "string_agg(",
    "first_value(",
    "row_number()",
    "lag(",
    ";",
    "INSERT INTO t VALUES",
    "CREATE TABLE u AS",
    "CREATE VIEW v AS",
    "DROP TABLE t",
    "DELETE FROM",
    "UPDATE t SET a = 1",
    "COPY t TO '/tmp/polder-fuzz'",
    "EXPLAIN",
    "EXPLAIN ANALYZE",
    "SET datafusion.execution.batch_size = 1",
    "SHOW ALL",
    "PREPARE p AS",
    "EXECUTE p",
    "information_schema.tables",
    "testcity.public.t",
    "\"a\"",
    "\"",
    "'",
    "/*",
    "*/",
    "--",
    "\n",
    "\u{0}",
    "é",
    "\u{202e}",
];

/// Statement shapes the tokens go into.
const SQL_TEMPLATES: &[&str] = &[
    "{}",
    "SELECT {}",
    "SELECT {} FROM t",
    "SELECT a FROM t WHERE {}",
    "SELECT * FROM t {}",
    "WITH x AS (SELECT {} FROM t) SELECT * FROM x",
    "SELECT a, count(*) FROM t GROUP BY a HAVING {}",
];

/// A statement from `(token, repeat)` pairs: a repeat byte of 240 or more repeats the token
/// 2^(repeat - 240) times (up to 32768), for deep nesting and long chains.
fn grammar_sql(template: u8, pieces: &[(u8, u8)]) -> String {
    let mut body = String::new();
    for &(token, repeat) in pieces {
        let token = SQL_TOKENS[usize::from(token) % SQL_TOKENS.len()];
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
    SQL_TEMPLATES[usize::from(template) % SQL_TEMPLATES.len()].replace("{}", &body)
}

#[test]
fn fuzz_sql_grammar() {
    bolero::check!()
        .with_type::<(u8, Vec<(u8, u8)>)>()
        .with_test_time(CI_TIME)
        .for_each(|(template, pieces)| plan(&grammar_sql(*template, pieces)));
}

/// Type URLs of the Flight SQL messages a descriptor, ticket or action body may carry.
const TYPE_URLS: &[&str] = &[
    "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery",
    "type.googleapis.com/arrow.flight.protocol.sql.TicketStatementQuery",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandPreparedStatementQuery",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetTables",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetDbSchemas",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetCatalogs",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetSqlInfo",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetXdbcTypeInfo",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetPrimaryKeys",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandGetCrossReference",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementUpdate",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementIngest",
    "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementSubstraitPlan",
    "type.googleapis.com/arrow.flight.protocol.sql.ActionCreatePreparedStatementRequest",
    "type.googleapis.com/arrow.flight.protocol.sql.ActionClosePreparedStatementRequest",
    "type.googleapis.com/something.Else",
];

/// Action types of Flight SQL.
const ACTION_TYPES: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    "",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A descriptor's, ticket's or action's bytes: raw bytes, a known message type around bytes
/// that may not decode, or a well-formed command whose fields are the input.
fn command(kind: u8, bytes: &[u8]) -> Vec<u8> {
    let (head, rest) = bytes.split_first().unwrap_or((&0, &[]));
    let handle_of_text = || StatementHandle::new(text(rest)).encode();
    let opt = || Some(text(rest));
    match kind % 16 {
        0 => bytes.to_vec(),
        1 => Any {
            type_url: TYPE_URLS[usize::from(*head) % TYPE_URLS.len()].into(),
            value: rest.to_vec().into(),
        }
        .encode_to_vec(),
        2 => CommandStatementQuery {
            query: text(bytes),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
        3 => TicketStatementQuery {
            statement_handle: bytes.to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
        4 => TicketStatementQuery {
            statement_handle: handle_of_text(),
        }
        .as_any()
        .encode_to_vec(),
        5 => CommandPreparedStatementQuery {
            prepared_statement_handle: bytes.to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
        6 => CommandPreparedStatementQuery {
            prepared_statement_handle: handle_of_text(),
        }
        .as_any()
        .encode_to_vec(),
        7 => CommandGetTables {
            catalog: opt(),
            db_schema_filter_pattern: opt(),
            table_name_filter_pattern: opt(),
            table_types: vec![text(rest)],
            include_schema: head % 2 == 0,
        }
        .as_any()
        .encode_to_vec(),
        8 => CommandGetDbSchemas {
            catalog: opt(),
            db_schema_filter_pattern: opt(),
        }
        .as_any()
        .encode_to_vec(),
        9 => CommandGetPrimaryKeys {
            catalog: opt(),
            db_schema: opt(),
            table: text(rest),
        }
        .as_any()
        .encode_to_vec(),
        10 => CommandGetSqlInfo {
            info: bytes
                .chunks(4)
                .map(|c| c.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)))
                .collect(),
        }
        .as_any()
        .encode_to_vec(),
        11 => CommandGetXdbcTypeInfo {
            data_type: Some(i32::from(*head) - 128),
        }
        .as_any()
        .encode_to_vec(),
        12 => CommandGetCrossReference {
            pk_catalog: opt(),
            pk_db_schema: opt(),
            pk_table: text(rest),
            fk_catalog: None,
            fk_db_schema: None,
            fk_table: text(bytes),
        }
        .as_any()
        .encode_to_vec(),
        13 => CommandStatementUpdate {
            query: text(bytes),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
        14 => CommandPreparedStatementUpdate {
            prepared_statement_handle: handle_of_text(),
        }
        .as_any()
        .encode_to_vec(),
        _ if head % 2 == 0 => ActionCreatePreparedStatementRequest {
            query: text(rest),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec(),
        _ => ActionClosePreparedStatementRequest {
            prepared_statement_handle: rest.to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
    }
}

/// The service's own fault, or a code that says nothing: never the answer to a client's bytes.
fn assert_clients_fault(what: &str, bytes: &[u8], status: &tonic::Status) {
    assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "{what} {bytes:?} answered {:?}: {}",
        status.code(),
        status.message()
    );
}

/// One request of each kind with `bytes` as its command: never a panic, and a refusal is the
/// client's fault. A result stream is read for a few messages (its query runs within the
/// engine's limits).
fn flight_request(verb: u8, bytes: Vec<u8>) {
    let node = node();
    let service = &node.service;
    node.rt.block_on(async {
        let descriptor = || Request::new(FlightDescriptor::new_cmd(bytes.clone()));
        match verb % 5 {
            0 => {
                if let Err(status) = service.get_flight_info(descriptor()).await {
                    assert_clients_fault("descriptor", &bytes, &status);
                }
            }
            1 => {
                if let Err(status) = service.get_schema(descriptor()).await {
                    assert_clients_fault("descriptor", &bytes, &status);
                }
            }
            2 => {
                if let Err(status) = service.poll_flight_info(descriptor()).await {
                    assert_clients_fault("descriptor", &bytes, &status);
                }
            }
            3 => match service
                .do_get(Request::new(Ticket::new(bytes.clone())))
                .await
            {
                Ok(response) => {
                    let _ = response.into_inner().take(4).collect::<Vec<_>>().await;
                }
                Err(status) => assert_clients_fault("ticket", &bytes, &status),
            },
            _ => {
                let kind =
                    ACTION_TYPES[bytes.first().map_or(0, |b| usize::from(*b)) % ACTION_TYPES.len()];
                let action = Action::new(kind, bytes.get(1..).unwrap_or_default().to_vec());
                if let Ok(response) = service.do_action(Request::new(action)).await {
                    let _ = response.into_inner().take(4).collect::<Vec<_>>().await;
                }
                // arrow-flight answers an action body that does not decode with INTERNAL
                // itself, before the service sees it: only the absence of panics is checked.
            }
        }
    });
}

#[test]
fn fuzz_flight_commands() {
    bolero::check!()
        .with_type::<(u8, u8, Vec<u8>)>()
        .with_test_time(CI_TIME)
        .for_each(|(verb, kind, bytes)| flight_request(*verb, command(*kind, bytes)));
}

#[test]
fn fuzz_flight_raw_bytes() {
    bolero::check!()
        .with_type::<(u8, Vec<u8>)>()
        .with_test_time(CI_TIME)
        .for_each(|(verb, bytes)| flight_request(*verb, bytes.clone()));
}

/// Arbitrary bytes as a handle or ticket: never a panic, a refusal is `InvalidRequest`, and a
/// handle that decodes has readable or refused parameters.
fn decode_handle(bytes: &[u8]) {
    match StatementHandle::decode(bytes) {
        Ok(handle) => {
            if let Err(err) = handle.params() {
                assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
            }
        }
        Err(err) => assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}"),
    }
}

#[test]
fn fuzz_handle_bytes() {
    bolero::check!()
        .with_test_time(CI_TIME)
        .for_each(|bytes: &[u8]| decode_handle(bytes));
}

/// Handles whose JSON is well-formed and whose parameters are arbitrary bytes (as base64): the
/// Arrow IPC reader meets whatever a client puts there.
#[test]
fn fuzz_handle_parameters() {
    use base64::Engine;
    bolero::check!()
        .with_type::<(String, Vec<u8>)>()
        .with_test_time(CI_TIME)
        .for_each(|(sql, ipc)| {
            let json = serde_json::json!({
                "v": 1,
                "sql": sql,
                "params": base64::engine::general_purpose::STANDARD.encode(ipc),
            });
            decode_handle(&serde_json::to_vec(&json).unwrap());
        });
}

/// Valid handles round-trip: the SQL text and the bound parameter rows come back unchanged.
#[test]
fn fuzz_handle_round_trip() {
    bolero::check!()
        .with_type::<(String, Vec<(i64, Option<String>)>)>()
        .with_test_time(CI_TIME)
        .for_each(|(sql, rows)| {
            let handle = StatementHandle::new(sql.clone());
            assert_eq!(StatementHandle::decode(&handle.encode()).unwrap(), handle);
            let batch = RecordBatch::try_from_iter([
                (
                    "0",
                    std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))
                        as _,
                ),
                (
                    "1",
                    std::sync::Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone())))
                        as _,
                ),
            ])
            .unwrap();
            let bound = handle.with_params(std::slice::from_ref(&batch)).unwrap();
            let decoded = StatementHandle::decode(&bound.encode()).unwrap();
            assert_eq!(decoded.sql, *sql);
            assert_eq!(decoded.params().unwrap(), vec![batch]);
        });
}

/// The parameters of a handle as a client could forge them: an Arrow IPC stream of `batch`,
/// compressed or not, with `patch` applied to the bytes of its record batch message (metadata
/// and body).
fn forged_params(compressed: bool, patch: impl Fn(&mut [u8], &mut [u8])) -> Vec<u8> {
    use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
    use datafusion::arrow::ipc::{CompressionType, root_as_message};
    let batch = RecordBatch::try_from_iter([(
        "0",
        // One null: a validity buffer, so the body is longer than the values buffer.
        std::sync::Arc::new(Int64Array::from_iter(
            (0..1000).map(|i| (i > 0).then_some(7)),
        )) as _,
    )])
    .unwrap();
    let options = IpcWriteOptions::default()
        .try_with_compression(compressed.then_some(CompressionType::LZ4_FRAME))
        .unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        StreamWriter::try_new_with_options(&mut bytes, &batch.schema(), options).unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    // Walk the messages (continuation marker, length, metadata, body) to the record batch.
    let mut at = 0;
    loop {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let start = at + 8;
        let message = root_as_message(&bytes[start..start + len]).unwrap();
        let body = message.bodyLength() as usize;
        if message.header_as_record_batch().is_some() {
            let (metadata, body) = bytes[start..start + len + body].split_at_mut(len);
            patch(metadata, body);
            return bytes;
        }
        at = start + len + body;
    }
}

/// Replaces the last occurrence of `old` in `bytes` by `new` (in a message's metadata, the
/// message table and its `bodyLength` come last; in a body there is one occurrence).
fn replace_i64(bytes: &mut [u8], old: i64, new: i64) {
    let at = bytes
        .windows(8)
        .rposition(|w| w == old.to_le_bytes())
        .expect("the value to patch");
    bytes[at..at + 8].copy_from_slice(&new.to_le_bytes());
}

fn handle_with_params(ipc: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let params = base64::engine::general_purpose::STANDARD.encode(ipc);
    serde_json::to_vec(&serde_json::json!({"v": 1, "sql": "SELECT $1", "params": params})).unwrap()
}

/// Found by `fuzz_handle_parameters`: Arrow's stream reader allocates and zeroes what a
/// message declares before reading it, so 4 bytes declaring ~875 MB of metadata (the legacy
/// framing without a continuation marker) cost the node that much memory and seconds of CPU,
/// and a batch declaring a body of 2^50 bytes, or a compressed buffer declaring 2^45 bytes
/// uncompressed, aborted the process (allocation failure); a buffer declared longer than the
/// body made the reader panic. `StatementHandle::params` now checks the framing and the
/// buffers first and refuses compressed parameters.
#[test]
fn regression_handle_parameters_with_forged_lengths() {
    let mut found = vec![0x8f, 0x80, 0x2b, 0x34];
    found.extend_from_slice(&[0xd9, 0xde, 0x17, 0x6f, 0xd0, 0x8a, 0xab, 0xf1]);
    let well_formed = forged_params(false, |_, _| {});
    let body_length = |metadata: &[u8]| {
        datafusion::arrow::ipc::root_as_message(metadata)
            .unwrap()
            .bodyLength()
    };
    let huge_body = forged_params(false, |metadata, _| {
        let declared = body_length(metadata);
        replace_i64(metadata, declared, 1 << 50)
    });
    let negative_body = forged_params(false, |metadata, _| {
        let declared = body_length(metadata);
        replace_i64(metadata, declared, -8)
    });
    let huge_buffer = forged_params(false, |metadata, _| replace_i64(metadata, 8000, 1 << 50));
    let compressed = forged_params(true, |_, _| {});
    let huge_uncompressed = forged_params(true, |_, body| replace_i64(body, 8000, 1 << 45));
    for ipc in [
        found,
        huge_body,
        negative_body,
        huge_buffer,
        compressed,
        huge_uncompressed,
    ] {
        let handle = StatementHandle::decode(&handle_with_params(&ipc)).unwrap();
        assert!(
            matches!(handle.params(), Err(Error::InvalidRequest(_))),
            "{ipc:?}"
        );
    }
    let handle = StatementHandle::decode(&handle_with_params(&well_formed)).unwrap();
    assert_eq!(handle.params().unwrap()[0].num_rows(), 1000);
}
