use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::*;

async fn engine() -> QueryEngine {
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_information_schema(true),
    );
    ctx.sql("CREATE TABLE t(a BIGINT, b VARCHAR) AS VALUES (1, 'x'), (2, 'y'), (3, 'z')")
        .await
        .unwrap();
    QueryEngine::new(ctx, QueryLimits::default())
}

#[tokio::test]
async fn refuses_writes_and_ddl() {
    let engine = engine().await;
    for sql in [
        "INSERT INTO t VALUES (4, 'w')",
        "CREATE TABLE u(a INT)",
        "DROP TABLE t",
        "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
        "COPY t TO '/tmp/out.csv'",
        "SET datafusion.execution.batch_size = 1",
        "EXPLAIN INSERT INTO t VALUES (4, 'w')",
        "CREATE VIEW v AS SELECT 1",
        "WITH x AS (SELECT 4 AS a, 'w' AS b) INSERT INTO t SELECT * FROM x",
        "WITH x AS (SELECT 1) UPDATE t SET a = 5",
        "WITH x AS (SELECT 1) DELETE FROM t",
    ] {
        let err = engine.plan(sql).await.unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{sql}: {err:?}");
    }
    assert!(engine.plan("EXPLAIN SELECT * FROM t").await.is_ok());
    assert!(engine.plan("SHOW TABLES").await.is_ok());
}

/// EXPLAIN shows plans, not where the data lies on the server.
#[tokio::test]
async fn explain_withholds_file_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret-mount-air.csv");
    std::fs::write(&file, "a,b\n1,x\n2,y\n").unwrap();
    let ctx = SessionContext::new();
    ctx.register_csv("air", file.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let engine = QueryEngine::new(ctx, QueryLimits::default());
    for sql in [
        "EXPLAIN SELECT * FROM air",
        "EXPLAIN VERBOSE SELECT a FROM air WHERE b = 'x'",
        "EXPLAIN ANALYZE SELECT count(*) FROM air",
    ] {
        let stream = engine.run(sql, vec![]).await.unwrap();
        let batches: Vec<RecordBatch> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("file_groups="), "{sql}: {text}");
        assert!(!text.contains("secret-mount"), "{sql}: {text}");
    }
}

#[tokio::test]
async fn refuses_overlong_and_empty_queries() {
    let engine = engine().await;
    let long = format!("SELECT 1 -- {}", "x".repeat(300 * 1024));
    assert!(
        matches!(engine.plan(&long).await, Err(Error::InvalidRequest(m)) if m.contains("bytes"))
    );
    assert!(matches!(
        engine.plan("  ").await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn binds_parameter_rows() {
    let engine = engine().await;
    let plan = engine
        .plan("SELECT b FROM t WHERE a > ? ORDER BY b")
        .await
        .unwrap();
    let schema = parameter_schema(&plan).unwrap();
    assert_eq!(schema.field(0).name(), "$1");
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    let params = RecordBatch::try_from_iter([(
        "p",
        Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2])) as _,
    )])
    .unwrap();
    let stream = engine.execute(plan, vec![params]).await.unwrap();
    let batches: Vec<_> = stream
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2 + 1);
}

#[tokio::test]
async fn stops_at_the_deadline() {
    let ctx = SessionContext::new();
    let limits = QueryLimits {
        timeout: Duration::from_millis(300),
        ..QueryLimits::default()
    };
    let engine = QueryEngine::new(ctx, limits);
    let plan = engine
        .plan("SELECT count(*) FROM generate_series(1, 1000000000) a")
        .await
        .unwrap();
    // The deadline covers physical planning too: the timeout comes from starting the
    // stream or from its first item.
    let err = match engine.execute(plan, vec![]).await {
        Err(err) => err.to_string(),
        Ok(mut stream) => {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let err = stream.next().await.unwrap().unwrap_err().to_string();
            assert!(stream.next().await.is_none());
            err
        }
    };
    assert!(err.contains("timeout"), "{err}");
}

fn chain(terms: usize, op: &str) -> String {
    format!(
        "SELECT {} AS x",
        std::iter::repeat_n("1", terms).collect::<Vec<_>>().join(op)
    )
}

/// An executor with one worker thread, and a current-thread runtime for the caller.
fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (executor, caller)
}

fn engine_on(executor: &tokio::runtime::Runtime, limits: QueryLimits) -> QueryEngine {
    QueryEngine::new(SessionContext::new(), limits).with_executor(executor.handle().clone())
}

async fn answer(engine: &QueryEngine, sql: &str) -> Result<Vec<RecordBatch>> {
    let stream = engine.run(sql, vec![]).await?;
    stream
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|batch| batch.map_err(Error::from_datafusion))
        .collect()
}

/// Deep statements are refused with a message naming the limit, never crash the process,
/// and statements within the limit are answered; the engine serves on after each.
#[test]
fn refuses_statements_nested_deeper_than_the_limit() {
    let limits = QueryLimits::default();
    let executor = QueryRuntime::new(&limits).unwrap();
    let caller = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine =
        QueryEngine::new(SessionContext::new(), limits.clone()).with_executor(executor.handle());
    let longest = |piece: &str| {
        // The longest statement of repeated `piece`s the length limit accepts.
        let n = (limits.max_query_bytes - 32) / piece.len();
        format!("SELECT 1{}", piece.repeat(n))
    };
    let mut parens = "1".to_string();
    for _ in 0..1000 {
        parens = format!("({parens})");
    }
    let mut subqueries = "SELECT 1".to_string();
    for _ in 0..300 {
        subqueries = format!("SELECT ({subqueries})");
    }
    caller.block_on(async {
        for sql in [
            chain(1_900, "+"),
            chain(5_000, " OR "),
            chain(5_000, " AND "),
            chain(5_000, " || "),
            longest("+1"),
            longest(" OR 1"),
            longest(" UNION ALL SELECT 1"),
            vec!["SELECT 1"; 2_000].join(" UNION ALL "),
            format!("SELECT {parens}"),
            subqueries.clone(),
            format!("EXPLAIN {}", chain(1_900, "+")),
            format!(
                "SELECT * FROM (VALUES (1)) t(a) WHERE {}",
                vec!["a = 1"; 2_000].join(" OR ")
            ),
        ] {
            let err = engine.plan(&sql).await.unwrap_err();
            assert!(
                matches!(&err, Error::InvalidRequest(m) if m.contains("levels deep")),
                "{}...: {err:?}",
                &sql[..60]
            );
            let batches = answer(&engine, "SELECT 41 + 1 AS answer").await.unwrap();
            assert_eq!(batches[0].num_rows(), 1);
        }
        // Just within the limit: planned and answered.
        let within = limits.max_query_depth - 8;
        let batches = answer(&engine, &chain(within, "+")).await.unwrap();
        let sum = datafusion::arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
        assert_eq!(
            sum.as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap()
                .value(0),
            within as i64
        );
        let unions = vec!["SELECT 1 AS x"; within].join(" UNION ALL ");
        let batches = answer(&engine, &format!("SELECT count(*) FROM ({unions})"))
            .await
            .unwrap();
        assert_eq!(batches[0].num_rows(), 1);
    });
}

/// Planning takes a query slot: with every slot held by a running result, a statement
/// waits for one and is refused when the queue timeout passes.
#[test]
fn planning_takes_a_query_slot() {
    let (executor, caller) = runtimes();
    let engine = engine_on(
        &executor,
        QueryLimits {
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(100),
            ..QueryLimits::default()
        },
    );
    caller.block_on(async {
        let running = engine.run("SELECT 1", vec![]).await.unwrap();
        let err = engine.plan("SELECT 2").await.unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
        drop(running);
        engine.plan("SELECT 2").await.unwrap();
    });
    executor.shutdown_background();
}

/// Through a dedicated executor, plans that outlive their deadline end with the timeout
/// error and are aborted: the executor's only thread is free again for the next query.
/// (That the node stays responsive under CPU-bound load is checked end to end by the
/// conformance suite, test_limits.py.)
#[test]
fn dedicated_executor_keeps_the_caller_responsive() {
    let (executor, caller) = runtimes();
    let engine = QueryEngine::new(
        SessionContext::new(),
        QueryLimits {
            timeout: Duration::from_millis(200),
            ..QueryLimits::default()
        },
    )
    .with_executor(executor.handle().clone());
    caller.block_on(async {
        for _ in 0..3 {
            let plan = engine
                .plan(
                    "SELECT count(*) FROM generate_series(1, 100000000000) a WHERE a.value % 7 = 3",
                )
                .await
                .unwrap();
            let mut stream = engine.execute(plan, vec![]).await.unwrap();
            let err = stream.next().await.unwrap().unwrap_err();
            assert!(err.to_string().contains("timeout"), "{err}");
        }
        // The executor's one thread is free: the aborted plans are gone.
        let plan = engine.plan("SELECT 41 + 1 AS answer").await.unwrap();
        let mut stream = engine.execute(plan, vec![]).await.unwrap();
        let batch = stream.next().await.unwrap().unwrap();
        assert_eq!(batch.num_rows(), 1);
    });
    executor.shutdown_background();
}
