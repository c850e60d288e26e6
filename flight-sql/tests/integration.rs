//! The Flight SQL service on a real socket, driven by arrow-rs's own Flight SQL client (the
//! Rust/Java client style). The Go/ADBC style and pyarrow are covered by `conformance-tests/`.

use std::sync::Arc;

use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use polder_flight_sql::{FlightSqlConfig, PolderFlightSqlService, QueryEngine, QueryLimits};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;

/// Starts a node serving one table `t(a BIGINT, b VARCHAR)` with 1000 rows on 127.0.0.1:0.
async fn start() -> FlightSqlServiceClient<Channel> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema("testcity", "public")
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.sql("CREATE TABLE t AS SELECT value AS a, concat('v', value) AS b FROM generate_series(1, 1000)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let service = PolderFlightSqlService::new(
        QueryEngine::new(ctx, QueryLimits::default()),
        FlightSqlConfig::default(),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// The gRPC code of a failed call.
fn code_of(err: arrow_flight::error::FlightError) -> Code {
    match err {
        arrow_flight::error::FlightError::Tonic(status) => status.code(),
        other => panic!("not a status: {other}"),
    }
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> (Arc<Schema>, Vec<RecordBatch>) {
    let schema = Arc::new(info.clone().try_decode_schema().unwrap());
    let mut batches = vec![];
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    (schema, batches)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn statement_results_carry_the_announced_schema_even_when_empty() {
    let mut client = start().await;
    let info = client
        .execute("SELECT a, b FROM t WHERE a > 990".into(), None)
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut client, info).await;
    assert_eq!(rows(&batches), 10);
    assert_eq!(batches[0].schema(), schema);

    let info = client
        .execute("SELECT a, b FROM t WHERE a < 0".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = client.do_get(ticket).await.unwrap();
    let mut stream = stream;
    let batches: Vec<_> = (&mut stream).try_collect().await.unwrap();
    assert_eq!(rows(&batches), 0);
    let streamed = stream
        .schema()
        .cloned()
        .expect("schema sent for an empty result");
    assert_eq!(streamed.fields().len(), 2);
    assert_eq!(streamed.field(0).data_type(), &DataType::Int64);
}

#[tokio::test]
async fn tickets_are_served_by_any_replica() {
    let mut first = start().await;
    let mut second = start().await;
    let info = first
        .execute("SELECT sum(a) AS s FROM t".into(), None)
        .await
        .unwrap();
    let (_, batches) = fetch(&mut second, info).await;
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        500_500
    );
}

#[tokio::test]
async fn prepared_statements_bind_parameters_rust_style() {
    let mut client = start().await;
    let mut prepared = client
        .prepare("SELECT count(*) AS n FROM t WHERE a > ?".into(), None)
        .await
        .unwrap();
    assert_eq!(
        prepared.parameter_schema().unwrap().field(0).data_type(),
        &DataType::Int64
    );
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "n");
    for (threshold, expected) in [(900, 100), (10, 990)] {
        let params =
            RecordBatch::try_from_iter([("$1", Arc::new(Int64Array::from(vec![threshold])) as _)])
                .unwrap();
        prepared.set_parameters(params).unwrap();
        let info = prepared.execute().await.unwrap();
        let (_, batches) = fetch(&mut client, info).await;
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().value(0),
            expected
        );
    }
    prepared.close().await.unwrap();
}

#[tokio::test]
async fn metadata_commands_answer_with_spec_schemas() {
    let mut client = start().await;
    let info = client.get_catalogs().await.unwrap();
    let (schema, batches) = fetch(&mut client, info).await;
    assert_eq!(schema.field(0).name(), "catalog_name");
    assert!(!schema.field(0).is_nullable());
    assert_eq!(batches[0].column(0).as_string::<i32>().value(0), "testcity");

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("testcity".into()),
            db_schema_filter_pattern: Some("pub%".into()),
        })
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, info).await;
    assert_eq!(rows(&batches), 1);

    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("t".into()),
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut client, info).await;
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "catalog_name",
            "db_schema_name",
            "table_name",
            "table_type",
            "table_schema"
        ]
    );
    assert_eq!(rows(&batches), 1);

    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, info).await;
    assert_eq!(rows(&batches), 1);

    let info = client
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: None,
            table: "t".into(),
        })
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut client, info).await;
    assert_eq!(schema.field(5).name(), "key_sequence");
    assert_eq!(rows(&batches), 0);
}

#[tokio::test]
async fn bad_requests_get_typed_statuses_and_the_node_keeps_serving() {
    let mut client = start().await;
    for (sql, code) in [
        ("SELEC 1", Code::InvalidArgument),
        ("SELECT * FROM missing", Code::NotFound),
        ("SELECT nope FROM t", Code::NotFound),
        ("DELETE FROM t", Code::PermissionDenied),
        ("SELECT a + b FROM t", Code::InvalidArgument),
    ] {
        let err = client.execute(sql.into(), None).await.unwrap_err();
        assert_eq!(code_of(err), code, "{sql}");
    }
    let garbage = arrow_flight::Ticket::new(b"not a ticket".to_vec());
    assert!(client.do_get(garbage).await.is_err());
    let err = client
        .execute_update("DELETE FROM t".into(), None)
        .await
        .unwrap_err();
    assert_eq!(code_of(err), Code::PermissionDenied);

    let info = client
        .execute("SELECT count(*) FROM t".into(), None)
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, info).await;
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        1000
    );
}

/// Bound parameters arrive as Arrow IPC messages whose declared sizes Arrow's reader trusts:
/// a compressed batch declares the size it decompresses to, which a forged message could make
/// petabytes (the process aborts on the allocation). Such messages are refused before the
/// reader sees them, and the node serves on.
#[tokio::test]
async fn compressed_or_forged_parameter_batches_are_refused() {
    use arrow_flight::FlightDescriptor;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::sql::{CommandPreparedStatementQuery, ProstMessageExt};
    use datafusion::arrow::ipc::CompressionType;
    use datafusion::arrow::ipc::writer::IpcWriteOptions;
    use futures::StreamExt;
    use prost::Message;

    let mut client = start().await;
    let handle = polder_flight_sql::handle::StatementHandle::new("SELECT a FROM t WHERE a > $1");
    let command = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.encode(),
    };
    let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let batch =
        RecordBatch::try_from_iter([("p", Arc::new(Int64Array::from(vec![5; 100])) as _)]).unwrap();
    let encode = |compression: Option<CompressionType>| {
        let options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .unwrap();
        FlightDataEncoderBuilder::new()
            .with_options(options)
            .with_flight_descriptor(Some(descriptor.clone()))
            .build(futures::stream::iter([Ok(batch.clone())]))
            .map(|data| data.unwrap())
    };
    let refused = client
        .do_put(encode(Some(CompressionType::LZ4_FRAME)))
        .await
        .err()
        .map(code_of);
    assert_eq!(refused, Some(Code::InvalidArgument));
    // A batch whose buffer lies beyond its body (a panic in Arrow's reader) is refused too.
    let mut forged: Vec<arrow_flight::FlightData> = encode(None).collect().await;
    let last = forged.last_mut().unwrap();
    last.data_body = last.data_body.slice(..last.data_body.len() / 2);
    let refused = client
        .do_put(futures::stream::iter(forged))
        .await
        .err()
        .map(code_of);
    assert_eq!(refused, Some(Code::InvalidArgument));
    // Uncompressed, well-formed parameters bind.
    let mut results = client.do_put(encode(None)).await.unwrap();
    assert!(results.next().await.is_some());
}

/// Asked with `udn-ipc-compression`, result bodies are compressed with that codec in every
/// record batch message, and decode to the same batches; an unknown codec is refused with
/// `INVALID_ARGUMENT` naming the header, and the node serves on (spec UDN-FSQL-9).
#[tokio::test]
async fn results_are_compressed_as_the_client_asks() {
    use datafusion::arrow::ipc::{CompressionType, root_as_message};

    let mut client = start().await;
    let info = client
        .execute("SELECT a, b FROM t ORDER BY a".into(), None)
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let (_, plain) = fetch(&mut client, info).await;
    let raw = |codec: &'static str| {
        let mut inner = client.inner().clone();
        let ticket = ticket.clone();
        async move {
            let mut request = tonic::Request::new(ticket);
            request
                .metadata_mut()
                .insert("udn-ipc-compression", codec.parse().unwrap());
            let messages: Vec<arrow_flight::FlightData> = inner
                .do_get(request)
                .await?
                .into_inner()
                .try_collect()
                .await?;
            Ok::<_, tonic::Status>(messages)
        }
    };
    for (codec, expected) in [
        ("zstd", Some(CompressionType::ZSTD)),
        ("lz4", Some(CompressionType::LZ4_FRAME)),
        ("none", None),
    ] {
        let messages = raw(codec).await.unwrap();
        let mut batches = 0;
        for message in &messages {
            let header = root_as_message(&message.data_header).unwrap();
            if let Some(batch) = header.header_as_record_batch() {
                batches += 1;
                assert_eq!(batch.compression().map(|c| c.codec()), expected, "{codec}");
            }
        }
        assert!(batches > 0, "{codec}: no record batch");
        let decoded = arrow_flight::utils::flight_data_to_batches(&messages).unwrap();
        assert_eq!(
            datafusion::arrow::compute::concat_batches(&decoded[0].schema(), &decoded).unwrap(),
            datafusion::arrow::compute::concat_batches(&plain[0].schema(), &plain).unwrap(),
            "{codec}"
        );
    }
    let refused = raw("brotli").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("udn-ipc-compression"),
        "{refused}"
    );
    assert_eq!(rows(&plain), 1000);
    let info = client.execute("SELECT 1".into(), None).await.unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await.1), 1);
}
