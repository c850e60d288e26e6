//! Aggregate-only access: known attacks are refused or release nothing small, and a property
//! test over generated queries checks that no released group has fewer than k distinct units.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use polder_access::{Claims, Identity, Policy, PolicyError, PolicySessions};
use polder_flight_sql::{Error, RequestSessions};
use proptest::prelude::*;

const K: i64 = 3;

const POLICY: &str = r#"
[[dataset]]
name = "trips"
personal = true
  [dataset.aggregate]
  unit = "rider"
  min_group_size = 3
  dimensions = ["zone", "hour"]
  functions = ["count", "sum", "avg"]
  [[dataset.rule]]
  groups = ["research"]
  access = "aggregate"

[[dataset]]
name = "zones"
  [[dataset.rule]]
  access = "raw"
"#;

/// Riders r0..r9 over zones: zone a has 5 riders, b has 3, c has 2, d has 1.
async fn base() -> SessionContext {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema("utrecht", "public")
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    let mut rows = vec![];
    let zones = [("a", 5), ("b", 3), ("c", 2), ("d", 1)];
    let mut rider = 0;
    for (zone, riders) in zones {
        for _ in 0..riders {
            for hour in [8, 9] {
                rows.push(format!(
                    "('r{rider}', '{zone}', {hour}, {}.5)",
                    rider % 4 + hour
                ));
            }
            rider += 1;
        }
    }
    ctx.sql(&format!(
        "CREATE TABLE trips(rider VARCHAR, zone VARCHAR, hour BIGINT, speed DOUBLE) AS VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();
    ctx.sql("CREATE TABLE zones(zone VARCHAR, name VARCHAR) AS VALUES ('a', 'Centrum'), ('b', 'Oost'), ('c', 'West'), ('d', 'Noord')")
        .await
        .unwrap();
    ctx
}

fn researcher() -> tonic::Extensions {
    let mut ext = tonic::Extensions::new();
    ext.insert(Identity::User {
        claims: Arc::new(Claims {
            sub: "alice".into(),
            iss: "i".into(),
            groups: vec!["research".into()],
            roles: vec![],
            org: None,
            purpose: None,
        }),
        token: Arc::from("t"),
    });
    ext
}

async fn session(base: &SessionContext) -> SessionContext {
    let policy = Arc::new(Policy::parse(POLICY).unwrap());
    PolicySessions::new(policy, "utrecht")
        .session(base, &researcher())
        .await
        .unwrap()
        .0
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, Error> {
    let df = ctx.sql(sql).await.map_err(Error::from)?;
    df.collect().await.map_err(Error::from)
}

fn refused(result: Result<Vec<RecordBatch>, Error>) -> bool {
    matches!(result, Err(Error::Forbidden(_)))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn raw_rows_never_leave() {
    let base = base().await;
    let ctx = session(&base).await;
    for sql in [
        "SELECT * FROM trips",
        "SELECT rider FROM trips LIMIT 1",
        "SELECT DISTINCT zone FROM trips",
        "SELECT zone, count(*) OVER (PARTITION BY zone) FROM trips",
        "EXPLAIN ANALYZE SELECT * FROM trips",
        "EXPLAIN ANALYZE SELECT zone, count(*) FROM trips GROUP BY zone",
        "SELECT t.zone, count(*) FROM trips t JOIN zones z ON t.zone = z.zone GROUP BY t.zone",
        "SELECT * FROM zones WHERE zone IN (SELECT zone FROM trips)",
        "SELECT zone FROM trips UNION ALL SELECT zone FROM zones",
    ] {
        assert!(refused(run(&ctx, sql).await), "{sql} was not refused");
    }
}

#[tokio::test]
async fn explain_shows_the_refusal_and_no_data() {
    let base = base().await;
    let ctx = session(&base).await;
    // Metadata describes the dataset and holds none of its values.
    for sql in [
        "SHOW TABLES",
        "SHOW COLUMNS FROM trips",
        "SELECT * FROM information_schema.columns WHERE table_name = 'trips'",
        "SELECT * FROM information_schema.tables",
        "EXPLAIN VERBOSE SELECT zone, count(*) FROM trips GROUP BY zone",
    ] {
        let batches = run(&ctx, sql).await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("trips") || text.contains("zone"),
            "{sql}: {text}"
        );
        for value in ["r9", "Centrum", "8.5"] {
            assert!(!text.contains(value), "{sql} shows {value}: {text}");
        }
    }
    let batches = run(&ctx, "EXPLAIN SELECT * FROM trips").await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("may only be aggregated"), "{text}");
    assert!(!text.contains("r9"), "{text}");
    // An allowed query's plan shows the group-size filter.
    let batches = run(
        &ctx,
        "EXPLAIN SELECT zone, count(*) FROM trips GROUP BY zone",
    )
    .await
    .unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(
        text.contains("polder_release_group(__polder_units, Int64(3))"),
        "{text}"
    );
}

#[tokio::test]
async fn known_attacks_are_refused() {
    let base = base().await;
    let ctx = session(&base).await;
    for sql in [
        // Grouping by the privacy unit, or smuggling it into a dimension.
        "SELECT rider, count(*) FROM trips GROUP BY rider",
        "SELECT zone || rider AS z, count(*) FROM trips GROUP BY zone || rider",
        "SELECT h, count(*) FROM (SELECT rider AS h FROM trips) s GROUP BY h",
        "SELECT z, count(*) FROM (SELECT concat(zone, rider) AS z, rider FROM trips) s GROUP BY z",
        // Grouping by a column that is not a dimension.
        "SELECT speed, count(*) FROM trips GROUP BY speed",
        // Functions that release single values.
        "SELECT zone, max(speed) FROM trips GROUP BY zone",
        "SELECT zone, min(rider) FROM trips GROUP BY zone",
        "SELECT zone, array_agg(speed) FROM trips GROUP BY zone",
        "SELECT zone, string_agg(rider, ',') FROM trips GROUP BY zone",
        "SELECT zone, sum(length(rider)) FROM trips GROUP BY zone",
        "SELECT zone, count(*) FROM trips GROUP BY ROLLUP(zone)",
        // Differencing: the same groups with and without one unit reveal that unit's share.
        "SELECT zone, sum(speed) FROM trips WHERE rider <> 'r0' GROUP BY zone",
        "SELECT count(*) FROM trips WHERE rider NOT IN ('r0', 'r1')",
        "SELECT zone, sum(speed) FILTER (WHERE rider <> 'r0') FROM trips GROUP BY zone",
        "SELECT zone, count(*) FILTER (WHERE rider = 'r0') FROM trips GROUP BY zone",
        "SELECT zone, count(*) FROM (SELECT zone, rider AS who FROM trips) s WHERE who <> 'r0' GROUP BY zone",
        // Conditional aggregates: one unit's presence and values, bisected bound by bound.
        "SELECT count(CASE WHEN rider = 'r0' AND hour = 8 AND speed <= 9 THEN 1 END) FROM trips",
        "SELECT sum(CASE WHEN rider = 'r0' THEN speed ELSE 0 END) FROM trips",
        "SELECT zone, sum(speed * CAST(rider = 'r0' AS DOUBLE)) FROM trips GROUP BY zone",
        "SELECT count(nullif(rider, 'r0')) FROM trips",
        // Filters on a measure select units by their values.
        "SELECT zone, count(*) FROM trips WHERE speed <= 9.5 GROUP BY zone",
        "SELECT count(*) FROM trips WHERE hour = 8 AND speed > 10",
        "SELECT zone, count(*) FILTER (WHERE speed > 10) FROM trips GROUP BY zone",
        // Subqueries and correlation in conditions test a unit without naming it in a filter.
        "SELECT avg(speed) FROM trips q WHERE NOT EXISTS (SELECT 1 WHERE q.rider = 'r0')",
        "SELECT count(*) FROM trips q WHERE EXISTS (SELECT 1 FROM zones z WHERE z.zone = q.zone AND q.speed > 10)",
        "SELECT zone, avg(speed) FROM trips WHERE zone IN (SELECT zone FROM zones WHERE name = 'Centrum') GROUP BY zone",
        "SELECT z.name, (SELECT count(*) FROM trips t WHERE t.zone = z.zone) FROM zones z",
        // Joins with constant tables before aggregating.
        "SELECT count(*) FROM trips t JOIN (VALUES ('r0')) v(r) ON t.rider = v.r",
        "SELECT zone, count(*) FROM trips CROSS JOIN (VALUES (1)) v(k) GROUP BY zone",
    ] {
        assert!(refused(run(&ctx, sql).await), "{sql} was not refused");
    }
}

#[tokio::test]
async fn small_groups_are_suppressed() {
    let base = base().await;
    let ctx = session(&base).await;
    // Zones c (2 riders) and d (1 rider) are never released, whatever HAVING says.
    for sql in [
        "SELECT zone, count(*) AS n FROM trips GROUP BY zone ORDER BY zone",
        "SELECT zone, count(*) AS n FROM trips GROUP BY zone HAVING count(*) <= 2 ORDER BY zone",
        "SELECT zone, count(DISTINCT rider) AS n FROM trips GROUP BY zone HAVING count(DISTINCT rider) = 1",
        "SELECT zone, avg(speed) FROM trips WHERE hour > 8 GROUP BY zone",
        "SELECT upper(zone) AS z, sum(speed) FROM trips GROUP BY upper(zone) ORDER BY 1",
        "SELECT zone, count(*) FROM (SELECT zone, rider FROM trips WHERE hour > 0) s GROUP BY zone",
        "SELECT zone, count(*) FILTER (WHERE hour = 8), avg(CAST(hour AS DOUBLE)) FROM trips GROUP BY zone",
    ] {
        let batches = run(&ctx, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        for batch in &batches {
            let zones = datafusion::arrow::compute::cast(
                batch.column(0),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            for zone in zones.as_string::<i32>().iter().flatten() {
                assert!(
                    zone.eq_ignore_ascii_case("a") || zone.eq_ignore_ascii_case("b"),
                    "{sql} released zone {zone}"
                );
            }
        }
    }
    let batches = run(&ctx, "SELECT zone, count(*) FROM trips GROUP BY zone")
        .await
        .unwrap();
    assert_eq!(rows(&batches), 2);
    // A global aggregate is one group of all eleven riders; a scalar subquery is one too.
    let total = run(&ctx, "SELECT count(*) AS n FROM trips").await.unwrap();
    assert_eq!(total[0].column(0).as_primitive::<Int64Type>().value(0), 22);
    let scalar = run(
        &ctx,
        "SELECT (SELECT count(DISTINCT rider) FROM trips) AS n",
    )
    .await
    .unwrap();
    assert_eq!(scalar[0].column(0).as_primitive::<Int64Type>().value(0), 11);
    // Aggregates join other data after aggregating.
    let joined = run(
        &ctx,
        "SELECT z.name, t.n FROM (SELECT zone, count(*) AS n FROM trips GROUP BY zone) t JOIN zones z ON t.zone = z.zone",
    )
    .await
    .unwrap();
    assert_eq!(rows(&joined), 2);
}

/// The distinct riders behind each released group, counted on the unrestricted data.
async fn check_released(
    base: &SessionContext,
    ctx: &SessionContext,
    group: &str,
    select: &str,
    having: &str,
    filter: &str,
    source: &str,
) -> Result<(), TestCaseError> {
    // Every source is the whole dataset, through a view (CTE), a subquery or a no-op filter.
    let (with, from) = match source {
        "view" => ("WITH v AS (SELECT * FROM trips) ", "v"),
        other => ("", other),
    };
    let sql = format!(
        "{with}SELECT {group} AS g, {select} FROM {from} {filter} GROUP BY {group} {having}"
    );
    match run(ctx, &sql).await {
        Err(Error::Forbidden(_)) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("{sql}: unexpected {other:?}"))),
        Ok(batches) => {
            for batch in &batches {
                let groups = datafusion::arrow::compute::cast(
                    batch.column(0),
                    &datafusion::arrow::datatypes::DataType::Utf8,
                )
                .unwrap();
                for g in groups.as_string::<i32>().iter() {
                    let condition = match g {
                        Some(v) => format!("CAST({group} AS VARCHAR) = '{v}'"),
                        None => format!("{group} IS NULL"),
                    };
                    let where_clause = if filter.is_empty() {
                        format!("WHERE {condition}")
                    } else {
                        format!("{filter} AND {condition}")
                    };
                    let check = base
                        .sql(&format!(
                            "SELECT count(DISTINCT rider) FROM trips {where_clause}"
                        ))
                        .await
                        .unwrap()
                        .collect()
                        .await
                        .unwrap();
                    let units = check[0].column(0).as_primitive::<Int64Type>().value(0);
                    prop_assert!(units >= K, "{sql} released group {g:?} of {units} riders");
                }
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_released_group_is_smaller_than_k(
        group in prop::sample::select(vec!["zone", "hour", "rider", "speed", "upper(zone)", "hour % 2", "zone || rider"]),
        select in prop::sample::select(vec!["count(*)", "sum(speed)", "avg(speed)", "max(speed)", "count(DISTINCT rider)", "min(rider)", "sum(hour)"]),
        having in prop::sample::select(vec!["", "HAVING count(*) = 1", "HAVING count(*) < 3", "HAVING count(DISTINCT rider) = 2", "HAVING sum(speed) > 0"]),
        filter in prop::sample::select(vec!["", "WHERE rider = 'r9'", "WHERE zone <> 'a'", "WHERE speed > 9", "WHERE rider IN ('r5', 'r6', 'r7')"]),
        source in prop::sample::select(vec!["trips", "view", "(SELECT * FROM trips) AS t", "(SELECT rider, zone, hour, speed FROM trips WHERE hour > 0) AS t"]),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let base = base().await;
            let ctx = session(&base).await;
            check_released(&base, &ctx, group, select, having, filter, source).await
        })?;
    }
}

/// Parts of attack queries: each generated query combines an attack (a conditional
/// aggregate, a condition on a measure or the unit, a subquery or correlation, a join with
/// constant rows) with an allowed frame; every one must be refused.
mod attacks {
    pub const CONDITIONS: &[&str] = &[
        "t.rider = 'r0'",
        "t.rider IN ('r0', 'r1')",
        "t.speed <= 9.5",
        "t.rider = 'r3' AND t.hour = 8 AND t.speed <= 10",
        "t.hour = 8 AND t.speed > 9",
        "NOT EXISTS (SELECT 1 WHERE t.rider = 'r0')",
        "EXISTS (SELECT 1 FROM zones z WHERE z.zone = t.zone AND z.name = 'Centrum')",
        "t.zone IN (SELECT zone FROM zones)",
        "t.hour = (SELECT max(hour) FROM trips)",
        "t.speed < (SELECT 10.0)",
    ];
    /// `{c}` is a condition; each template puts it where a reconstruction needs it.
    pub const TEMPLATES: &[&str] = &[
        "SELECT count(CASE WHEN {c} THEN 1 END) FROM trips t",
        "SELECT t.zone, sum(CASE WHEN {c} THEN t.speed END) FROM trips t GROUP BY t.zone",
        "SELECT avg(CASE WHEN {c} THEN t.speed ELSE 0 END) FROM trips t",
        "SELECT t.zone, count(*) FROM trips t WHERE {c} GROUP BY t.zone",
        "SELECT avg(t.speed) FROM trips t WHERE t.zone = 'a' AND ({c})",
        "SELECT t.zone, count(*) FILTER (WHERE {c}) FROM trips t GROUP BY t.zone",
        "SELECT count(*) FROM (SELECT * FROM trips t WHERE {c}) s",
        "WITH v AS (SELECT * FROM trips t) SELECT count(*) FROM v t WHERE {c}",
        "SELECT count(*) FROM trips EXCEPT SELECT count(*) FROM trips t WHERE {c}",
        "SELECT (SELECT count(*) FROM trips t WHERE {c}) - (SELECT count(*) FROM trips) AS d",
        "SELECT t.zone, count(*) FROM trips t JOIN (VALUES (1)) v(k) ON {c} GROUP BY t.zone",
        "SELECT t.zone, count(*) FROM trips t GROUP BY t.zone HAVING count(*) > 0 AND sum(CASE WHEN {c} THEN 1 END) > 0",
    ];
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Generated differencing and reconstruction attacks are refused whole.
    #[test]
    fn generated_attacks_are_refused(
        template in prop::sample::select(attacks::TEMPLATES),
        condition in prop::sample::select(attacks::CONDITIONS),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sql = template.replace("{c}", condition);
        let result = runtime.block_on(async {
            let base = base().await;
            let ctx = session(&base).await;
            run(&ctx, &sql).await
        });
        prop_assert!(
            matches!(result, Err(Error::Forbidden(_))),
            "{sql} was not refused: {result:?}"
        );
    }
}

#[test]
fn unknown_function_or_column_fails_the_load() {
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
        datafusion::arrow::datatypes::Field::new(
            "rider",
            datafusion::arrow::datatypes::DataType::Utf8,
            false,
        ),
        datafusion::arrow::datatypes::Field::new(
            "zone",
            datafusion::arrow::datatypes::DataType::Utf8,
            false,
        ),
        datafusion::arrow::datatypes::Field::new(
            "hour",
            datafusion::arrow::datatypes::DataType::Int64,
            false,
        ),
    ]));
    let mut tables = std::collections::BTreeMap::new();
    tables.insert("trips".to_string(), schema.clone());
    tables.insert("zones".to_string(), schema);
    let functions = datafusion::prelude::SessionContext::new().state();
    Policy::parse(POLICY)
        .unwrap()
        .check(&tables, &functions)
        .unwrap();
    let err = Policy::parse(&POLICY.replace("\"avg\"]", "\"avgg\"]"))
        .unwrap()
        .check(&tables, &functions)
        .unwrap_err();
    assert!(err.to_string().contains("'avgg'"), "{err}");
    let err = Policy::parse(&POLICY.replace("unit = \"rider\"", "unit = \"ryder\""))
        .unwrap()
        .check(&tables, &functions)
        .unwrap_err();
    assert!(err.to_string().contains("'ryder'"), "{err}");
    let err =
        Policy::parse(&POLICY.replace("min_group_size = 3", "min_group_size = 1")).unwrap_err();
    assert!(err.to_string().contains("min_group_size"), "{err}");
    let err = Policy::parse(&POLICY.replace(
        "dimensions = [\"zone\", \"hour\"]",
        "dimensions = [\"zone\", \"rider\"]",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("cannot be a dimension"), "{err}");
}

#[tokio::test]
async fn refuse_mode_fails_instead_of_suppressing() {
    let base = base().await;
    let policy = Arc::new(
        Policy::parse(&POLICY.replace(
            "functions = [\"count\", \"sum\", \"avg\"]",
            "functions = [\"count\", \"sum\", \"avg\"]\n  on_violation = \"refuse\"",
        ))
        .unwrap(),
    );
    let ctx = PolicySessions::new(policy, "utrecht")
        .session(&base, &researcher())
        .await
        .unwrap()
        .0;
    // Zones c and d are small: the query fails rather than leaving them out.
    let err = run(&ctx, "SELECT zone, count(*) FROM trips GROUP BY zone")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(m) if m.contains("fewer than 3")),
        "{err:?}"
    );
    // Only large groups: answered in full.
    let batches = run(
        &ctx,
        "SELECT zone, count(*) FROM trips WHERE zone IN ('a', 'b') GROUP BY zone",
    )
    .await
    .unwrap();
    assert_eq!(rows(&batches), 2);
    // HAVING cannot hide a small group from the check: it sits below HAVING.
    let err = run(
        &ctx,
        "SELECT zone, count(*) FROM trips GROUP BY zone HAVING count(*) > 5",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
}

/// The trips policy (`POLICY`) allowing `functions`, perturbed with the key in `key_file`.
fn with_perturbation(functions: &str, key_file: &str) -> String {
    POLICY.replace(
        "functions = [\"count\", \"sum\", \"avg\"]",
        &format!(
            "functions = {functions}\n  [dataset.aggregate.perturbation]\n  key_file = \"{key_file}\"\n  count_spread = 2\n  magnitude = 0.5"
        ),
    )
}

/// The trips policy with cell-key perturbation, its key in `dir`.
fn perturbed_policy(dir: &std::path::Path, functions: &str) -> Result<Policy, PolicyError> {
    std::fs::write(dir.join("cell.key"), [42u8; 32]).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, with_perturbation(functions, "cell.key")).unwrap();
    Policy::load(&path)
}

async fn perturbed_session(base: &SessionContext, dir: &std::path::Path) -> SessionContext {
    let policy = Arc::new(perturbed_policy(dir, r#"["count", "sum", "avg"]"#).unwrap());
    PolicySessions::new(policy, "utrecht")
        .session(base, &researcher())
        .await
        .unwrap()
        .0
}

/// The first row of `sql`'s answer as floats.
async fn first_row(ctx: &SessionContext, sql: &str) -> Vec<f64> {
    let batches = run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .unwrap_or_else(|| panic!("{sql}: no rows"));
    batch
        .columns()
        .iter()
        .map(|c| {
            let c = datafusion::arrow::compute::cast(
                c,
                &datafusion::arrow::datatypes::DataType::Float64,
            )
            .unwrap();
            c.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0)
        })
        .collect()
}

/// Tracker attacks (two allowed queries whose cells differ by a small group) no longer give the
/// small group's values, and asking the same cell again, however phrased, gives the same
/// answer: nothing to average away.
#[tokio::test]
async fn perturbation_defeats_differencing_and_cannot_be_averaged() {
    let dir = tempfile::tempdir().unwrap();
    let base = base().await;
    let ctx = perturbed_session(&base, dir.path()).await;
    let stats = "count(*) AS n, sum(speed) AS s, avg(speed) AS a";
    // Zones c (2 riders) and d (1 rider) are below k: differencing a large cell with and without
    // them is the attack.
    let mut exact_counts = 0;
    let pairs = [
        ("zone IN ('a', 'c')", "zone = 'a'", "zone = 'c'"),
        ("zone IN ('a', 'd')", "zone = 'a'", "zone = 'd'"),
        ("zone IN ('b', 'c')", "zone = 'b'", "zone = 'c'"),
        ("zone IN ('b', 'd')", "zone = 'b'", "zone = 'd'"),
        (
            "zone IN ('a', 'b', 'c')",
            "zone IN ('a', 'b')",
            "zone = 'c'",
        ),
        (
            "zone IN ('a', 'b', 'd')",
            "zone IN ('a', 'b')",
            "zone = 'd'",
        ),
        ("zone <> 'a'", "zone = 'b'", "zone IN ('c', 'd')"),
        (
            "hour = 8 AND zone IN ('a', 'c')",
            "hour = 8 AND zone = 'a'",
            "hour = 8 AND zone = 'c'",
        ),
        (
            "hour = 9 AND zone IN ('b', 'd')",
            "hour = 9 AND zone = 'b'",
            "hour = 9 AND zone = 'd'",
        ),
        (
            "hour = 9 AND zone <> 'c'",
            "hour = 9 AND zone IN ('a', 'b')",
            "hour = 9 AND zone = 'd'",
        ),
    ];
    for (with, without, target) in pairs {
        let big = first_row(&ctx, &format!("SELECT {stats} FROM trips WHERE {with}")).await;
        let small = first_row(&ctx, &format!("SELECT {stats} FROM trips WHERE {without}")).await;
        let truth = base
            .sql(&format!(
                "SELECT count(*), sum(speed), max(abs(speed)) FROM trips WHERE {target}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let truth: Vec<f64> = truth[0]
            .columns()
            .iter()
            .map(|c| {
                datafusion::arrow::compute::cast(
                    c,
                    &datafusion::arrow::datatypes::DataType::Float64,
                )
                .unwrap()
                .as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                .value(0)
            })
            .collect();
        if big[0] - small[0] == truth[0] {
            exact_counts += 1;
        }
        assert!(
            (big[1] - small[1] - truth[1]).abs() > 1e-9,
            "{with} minus {without} gives the exact sum of {target}"
        );
    }
    assert!(
        exact_counts < pairs.len() / 2,
        "{exact_counts} of {} differences give exact counts",
        pairs.len()
    );
    // The same cell, however asked, moves the same way.
    let cell = first_row(
        &ctx,
        "SELECT count(*), sum(speed) FROM trips WHERE zone IN ('a', 'c')",
    )
    .await;
    for sql in [
        "SELECT count(*), sum(speed) FROM trips WHERE zone IN ('a', 'c')",
        "SELECT count(1), sum(speed) FROM trips WHERE zone IN ('c', 'a')",
        "SELECT count(rider), sum(CAST(speed AS DOUBLE)) FROM trips WHERE zone = 'a' OR zone = 'c'",
        "SELECT count(*), sum(speed) FROM (SELECT * FROM trips WHERE zone <> 'b') t WHERE zone <> 'd'",
        "SELECT count(*) FILTER (WHERE zone IN ('a', 'c')), sum(speed) FILTER (WHERE zone IN ('a', 'c')) FROM trips",
    ] {
        assert_eq!(first_row(&ctx, sql).await, cell, "{sql}");
    }
    let swapped = first_row(
        &ctx,
        "SELECT sum(speed), count(*) FROM trips WHERE zone IN ('a', 'c')",
    )
    .await;
    assert_eq!(swapped, vec![cell[1], cell[0]]);
}

/// What perturbation costs: a count moves by at most D, a sum by at most m times the cell's
/// largest value, an average by that over n; groups below k are still never released.
#[tokio::test]
async fn perturbation_stays_within_its_stated_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let base = base().await;
    let ctx = perturbed_session(&base, dir.path()).await;
    let query = "SELECT zone, hour, count(*), sum(speed), avg(speed) FROM trips GROUP BY zone, hour ORDER BY zone, hour";
    let released = run(&ctx, query).await.unwrap();
    let truth = run(&base, query).await.unwrap();
    let to_f64 = |batches: &[RecordBatch], column: usize| -> Vec<f64> {
        batches
            .iter()
            .flat_map(|b| {
                let c = datafusion::arrow::compute::cast(
                    b.column(column),
                    &datafusion::arrow::datatypes::DataType::Float64,
                )
                .unwrap();
                c.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    // Zones a and b per hour: 5 and 3 riders, at least k; c and d never.
    assert_eq!(rows(&released), 4);
    let largest = 12.5;
    let (n, s, a) = (
        to_f64(&released, 2),
        to_f64(&released, 3),
        to_f64(&released, 4),
    );
    let (tn, ts, ta) = (to_f64(&truth, 2), to_f64(&truth, 3), to_f64(&truth, 4));
    let mut moved = 0;
    for i in 0..n.len() {
        assert!((n[i] - tn[i]).abs() <= 2.0, "count {} vs {}", n[i], tn[i]);
        assert!(
            (s[i] - ts[i]).abs() <= 0.5 * largest,
            "sum {} vs {}",
            s[i],
            ts[i]
        );
        assert!(
            (a[i] - ta[i]).abs() <= 0.5 * largest / tn[i],
            "avg {} vs {}",
            a[i],
            ta[i]
        );
        moved += usize::from(s[i] != ts[i]);
    }
    assert!(moved > 0, "no sum was perturbed");
    // EXPLAIN shows the perturbation.
    let plan = run(&ctx, &format!("EXPLAIN {query}")).await.unwrap();
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(
        text.contains("polder_perturb") && text.contains("polder_cell_key"),
        "{text}"
    );
}

#[tokio::test]
async fn perturbation_needs_its_key_perturbable_functions_and_the_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let err = perturbed_policy(dir.path(), r#"["count", "max"]"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'max'") && err.contains("perturbed"), "{err}");
    std::fs::write(dir.path().join("short.key"), [1u8; 8]).unwrap();
    for (key, expected) in [("missing.key", "missing.key"), ("short.key", "32")] {
        let file = dir.path().join(format!("{key}.toml"));
        std::fs::write(&file, with_perturbation(r#"["count"]"#, key)).unwrap();
        let err = Policy::load(&file).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    // A subquery that drops a dimension cannot be keyed per cell.
    let base = base().await;
    let ctx = perturbed_session(&base, dir.path()).await;
    let err = run(
        &ctx,
        "SELECT zone, count(*) FROM (SELECT zone, rider FROM trips) s GROUP BY zone",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(m) if m.contains("'hour'")),
        "{err:?}"
    );
}
