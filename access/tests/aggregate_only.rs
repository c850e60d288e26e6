//! Aggregate-only access: known attacks are refused or release nothing small, and a property
//! test over generated queries checks that no released group has fewer than k distinct units.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use polder_access::{Claims, Identity, Policy, PolicySessions};
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
        "SELECT zone, avg(speed) FROM trips WHERE speed > 9 GROUP BY zone",
        "SELECT upper(zone) AS z, sum(speed) FROM trips GROUP BY upper(zone) ORDER BY 1",
        "SELECT zone, count(*) FROM (SELECT zone, rider FROM trips WHERE speed > 0) s GROUP BY zone",
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
