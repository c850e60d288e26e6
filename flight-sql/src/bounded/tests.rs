use super::*;
use crate::Error;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;

const LIMIT: usize = 8 * 1024 * 1024;

fn state(limit: usize) -> SessionState {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limit, 1.0)
        .build_arc()
        .unwrap();
    SessionStateBuilder::new()
        .with_config(crate::session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .build()
}

fn bounded() -> SessionContext {
    SessionContext::new_with_state(bound_functions(state(LIMIT)))
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<String, Error> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(pretty_format_batches(&batches)?.to_string())
}

#[tokio::test]
async fn large_outputs_are_refused_naming_the_function() {
    let ctx = bounded();
    let cases = [
        ("repeat", "SELECT length(repeat('x', 1500000000))"),
        ("lpad", "SELECT lpad('x', 1500000000)"),
        ("rpad", "SELECT rpad('x', 1500000000, 'é')"),
        (
            "replace",
            "SELECT replace(repeat('x', 100000), 'x', repeat('y', 1000))",
        ),
        (
            "regexp_replace",
            "SELECT regexp_replace(repeat('x', 100000), 'x', repeat('y', 1000), 'g')",
        ),
        (
            "concat",
            "SELECT concat(repeat('x', 1500000), repeat('y', 1500000))",
        ),
        (
            "concat_ws",
            "SELECT concat_ws(repeat('x', 1100000), 'a', 'b', 'c')",
        ),
        (
            "overlay",
            "SELECT overlay(repeat('x', 1500000) PLACING 'y' FROM 1 FOR 1)",
        ),
        ("overlay", "SELECT overlay(repeat('x', 1500000), 'y', 1, 1)"),
        ("encode", "SELECT encode(repeat('x', 1500000), 'hex')"),
        ("range", "SELECT cardinality(range(1, 300000000))"),
        (
            "generate_series",
            "SELECT cardinality(generate_series(1, 300000000))",
        ),
        (
            "range",
            "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2001-01-01', \
             INTERVAL '1 second'))",
        ),
        (
            "array_repeat",
            "SELECT cardinality(array_repeat(1, 300000000))",
        ),
        (
            "array_repeat",
            "SELECT cardinality(array_repeat(repeat('x', 1000), 3000))",
        ),
        (
            "array_resize",
            "SELECT cardinality(array_resize([1], 300000000, 0))",
        ),
        (
            "array_to_string",
            "SELECT length(array_to_string(range(1, 100000), repeat('-', 100)))",
        ),
        (
            "array_concat",
            "SELECT cardinality(array_concat(range(1, 200000), range(1, 200000)))",
        ),
        (
            "array_concat",
            "SELECT cardinality(range(1, 200000) || range(1, 200000))",
        ),
        // Each row is small; the batch is not.
        (
            "repeat",
            "SELECT repeat('x', 100000) FROM generate_series(1, 100)",
        ),
        (
            "repeat",
            "SELECT length(repeat(CAST(value AS VARCHAR), 100000)) FROM generate_series(1, 100)",
        ),
        // Each step of a chain is checked on its own inputs.
        ("repeat", "SELECT length(repeat(repeat('x', 40000), 40000))"),
        // `||` on strings doubles like concat: a chain of doublings stops at the budget.
        (
            "the || operator",
            "WITH a AS (SELECT repeat('x', 1000000) AS s), b AS (SELECT s || s AS s FROM a), \
             c AS (SELECT s || s AS s FROM b) SELECT length(s || s) FROM c",
        ),
        (
            "the || operator",
            "SELECT length(v || v) FROM (SELECT repeat(CAST(value AS VARCHAR), 300) AS v \
             FROM generate_series(1000, 2000)) t",
        ),
    ];
    for (name, sql) in cases {
        match run(&ctx, sql).await {
            Err(Error::ResourceExhausted(m)) => {
                let named = if name.contains("||") {
                    name.to_string()
                } else {
                    format!("{name}()")
                };
                assert!(m.contains(&named), "{sql}: {m}");
                assert!(m.contains("memory limit"), "{sql}: {m}");
            }
            Err(other) => panic!("{sql}: {other}"),
            Ok(answer) => panic!("{sql} answered {} bytes", answer.len()),
        }
    }
}

#[tokio::test]
async fn small_calls_answer_as_the_unbounded_functions() {
    let plain = SessionContext::new_with_state(state(LIMIT));
    let ctx = bounded();
    let sql = "SELECT repeat('ab', 3), lpad('x', 5, 'yz'), rpad('é', 4, 'ü'), \
        replace('abcabc', 'b', 'XY'), regexp_replace('aaa', 'a', '${0}b', 'g'), \
        concat('a', NULL, 'b'), concat_ws('-', 'a', NULL, 'b'), \
        overlay('Txxxxas' PLACING 'hom' FROM 2 FOR 4), encode('ab', 'hex'), \
        array_repeat(1, 3), range(1, 5), generate_series(1, 3), range(DATE '2020-01-01', \
        DATE '2020-03-01', INTERVAL '1 month'), array_resize([1, 2], 4, 0), \
        array_to_string([1, 2, 3], ','), array_concat([1], [2, 3])";
    let expected = run(&plain, sql).await.unwrap();
    assert_eq!(run(&ctx, sql).await.unwrap(), expected);
    let per_row = "SELECT value, repeat('x', CAST(value AS INT)), lpad(CAST(value AS VARCHAR), \
        CAST(value AS INT), '0'), array_repeat(value, 2), range(value), \
        concat(CAST(value AS VARCHAR), 'x') FROM generate_series(0, 4) ORDER BY value";
    let expected = run(&plain, per_row).await.unwrap();
    assert_eq!(run(&ctx, per_row).await.unwrap(), expected);
    // `||` answers as the operator does: NULL when either side is, the same column names.
    let operator = "SELECT 'a' || 'b' AS c, NULL || 'x', v || '-' || v, v || NULL \
        FROM (VALUES ('p'), (NULL), ('q')) t(v)";
    let expected = run(&plain, operator).await.unwrap();
    assert_eq!(run(&ctx, operator).await.unwrap(), expected);
    let columns = "SELECT v || w, v || 'x' || w FROM (VALUES ('a', 'b')) t(v, w)";
    let names = |ctx: &SessionContext| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(columns).await.unwrap();
            df.schema().field_names()
        }
    };
    assert_eq!(names(&ctx).await, names(&plain).await);
    // Within the budget, a many-row batch answers too (2 MiB under 8 MiB).
    let rows = "SELECT sum(length(repeat('x', 1000))) FROM generate_series(1, 1000)";
    assert!(run(&ctx, rows).await.unwrap().contains("1000000"));
}

#[tokio::test]
async fn small_constants_fold_and_large_ones_stay_calls() {
    let ctx = bounded();
    let plan = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let df = ctx.sql(sql).await.unwrap();
            format!("{}", df.into_optimized_plan().unwrap().display_indent())
        }
    };
    assert!(plan("SELECT repeat('ab', 3) AS s").await.contains("ababab"));
    let large = plan("SELECT repeat('x', 100000) AS s").await;
    assert!(
        large.contains("repeat(Utf8(\"x\"), Int64(100000))"),
        "{large}"
    );
    // One row of 100 kB answers: only the folding was held back.
    let answer = run(&ctx, "SELECT length(repeat('x', 100000)) AS n")
        .await
        .unwrap();
    assert!(answer.contains("100000"), "{answer}");
}

#[test]
fn names_aliases_and_signatures_are_kept() {
    let before = state(LIMIT);
    let after = bound_functions(state(LIMIT));
    for name in [
        "repeat",
        "lpad",
        "array_repeat",
        "list_repeat",
        "range",
        "generate_series",
    ] {
        let (b, a) = (before.udf(name).unwrap(), after.udf(name).unwrap());
        assert!(a.inner().is::<BoundedFunction>(), "{name}");
        assert_eq!((a.name(), a.aliases()), (b.name(), b.aliases()));
        assert_eq!(a.signature(), b.signature());
    }
    assert!(!after.udf("upper").unwrap().inner().is::<BoundedFunction>());
    // Twice is once; no limit, no bounds.
    let twice = bound_functions(after);
    let repeat = twice.udf("repeat").unwrap();
    let bounded = repeat.inner().downcast_ref::<BoundedFunction>().unwrap();
    assert!(!bounded.inner.is::<BoundedFunction>());
    let guards = twice
        .optimizers()
        .iter()
        .filter(|r| is_guard(r.as_ref()))
        .count();
    assert_eq!(
        guards,
        before
            .optimizers()
            .iter()
            .filter(|r| r.name() == SIMPLIFY)
            .count()
    );
    let unlimited = SessionStateBuilder::new().with_default_features().build();
    let unlimited = bound_functions(unlimited);
    assert!(
        !unlimited
            .udf("repeat")
            .unwrap()
            .inner()
            .is::<BoundedFunction>()
    );
}
