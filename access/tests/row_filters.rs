//! Row filters, masks and denied columns: a property test over generated queries checks that a
//! caller's answers are exactly the answers over the filtered, masked table (so no filtered row
//! and no raw masked value can reach the caller, whatever the query does: filters on the
//! masked value, CTEs, subqueries, self-joins, unions, aggregates, `information_schema`).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use polder_access::{Claims, Identity, Policy, PolicySessions};
use polder_flight_sql::RequestSessions;
use proptest::prelude::*;

/// The same rule on the Parquet table and on the table that applies pushed filters itself.
fn policy() -> String {
    ["reports", "reports_exact"]
        .map(|name| {
            format!(
                r#"
[[dataset]]
name = "{name}"
  [[dataset.rule]]
  roles = ["clerk"]
  access = "raw"
  row_filter = "city = $org"
  deny_columns = ["email"]
  masks = {{ postcode = "left(postcode, 4)", reporter = "'***'" }}
"#
            )
        })
        .concat()
}

/// The stored rows: (city, district, postcode, reporter, email, n).
fn stored() -> Vec<String> {
    let mut rows = vec![];
    for (i, city) in ["utrecht", "amsterdam", "utrecht", "rotterdam", "utrecht"]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let district = ["centrum", "oost", "west"][i % 3];
        rows.push(format!(
            "('{city}', '{district}', '{}{:02}AB', 'r{i}', 'p{i}@example.org', {})",
            3500 + i % 4,
            i,
            i % 7
        ));
    }
    rows
}

fn config() -> SessionConfig {
    SessionConfig::new()
        .with_default_catalog_and_schema("utrecht", "public")
        .with_information_schema(true)
}

/// The node, with the stored rows in a Parquet file whose scan evaluates the filters pushed to
/// it row by row, and as a table that claims to apply pushed filters exactly itself (as a
/// database connector does), so a filter wrongly pushed below a mask or row filter changes the
/// answer either way.
async fn node() -> SessionContext {
    // Cargo's scratch directory for integration tests: one file, rewritten by each case.
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "row_filters_{:?}.parquet",
        std::thread::current().id()
    ));
    let writer = SessionContext::new();
    writer
        .sql(&format!(
            "COPY (SELECT column1 AS city, column2 AS district, column3 AS postcode, column4 AS reporter, column5 AS email, column6 AS n FROM (VALUES {})) TO '{}' STORED AS PARQUET",
            stored().join(", "),
            file.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut config = config();
    config.options_mut().execution.parquet.pushdown_filters = true;
    let ctx = SessionContext::new_with_config(config);
    ctx.register_parquet("reports", file.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let exact = ExactFilters(ctx.table_provider("reports").await.unwrap());
    ctx.register_table("reports_exact", Arc::new(exact))
        .unwrap();
    ctx
}

/// A table that answers every filter pushed to it as `Exact` and applies them in its scan.
#[derive(Debug)]
struct ExactFilters(Arc<dyn TableProvider>);

#[async_trait::async_trait]
impl TableProvider for ExactFilters {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let all = self.0.scan(state, None, &[], None).await?;
        let schema = DFSchema::try_from(self.0.schema().as_ref().clone())?;
        let mut plan = all;
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let predicate = state.create_physical_expr(predicate, &schema)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.0.schema().fields().len()).collect(),
        };
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = columns
            .iter()
            .map(|&i| {
                let name = self.0.schema().field(i).name().clone();
                (
                    Arc::new(PhysicalColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        if let Some(limit) = limit {
            plan = Arc::new(GlobalLimitExec::new(plan, 0, Some(limit)));
        }
        Ok(plan)
    }
}

/// What a clerk of Utrecht may see, computed independently: the filtered, masked table.
async fn oracle() -> SessionContext {
    let ctx = SessionContext::new_with_config(config());
    ctx.sql(&format!(
        "CREATE TABLE stored(city VARCHAR, district VARCHAR, postcode VARCHAR, reporter VARCHAR, email VARCHAR, n BIGINT) AS VALUES {}",
        stored().join(", ")
    ))
    .await
    .unwrap();
    ctx.sql(
        "CREATE TABLE reports AS SELECT city, district, substr(postcode, 1, 4) AS postcode, \
         '***' AS reporter, n FROM stored WHERE city = 'utrecht'",
    )
    .await
    .unwrap();
    ctx.deregister_table("stored").unwrap();
    ctx.register_table(
        "reports_exact",
        ctx.table_provider("reports").await.unwrap(),
    )
    .unwrap();
    ctx
}

async fn clerk(node: &SessionContext) -> SessionContext {
    let mut ext = tonic::Extensions::new();
    ext.insert(Identity::User {
        claims: Arc::new(Claims {
            sub: "carol".into(),
            iss: "i".into(),
            groups: vec![],
            roles: vec!["clerk".into()],
            org: Some("utrecht".into()),
            purpose: None,
        }),
        token: Arc::from("t"),
    });
    let policy = Policy::parse(&policy()).unwrap();
    let mut tables = std::collections::BTreeMap::new();
    for name in ["reports", "reports_exact"] {
        tables.insert(
            name.to_string(),
            node.table_provider(name).await.unwrap().schema(),
        );
    }
    policy.check(&tables, &node.state()).unwrap();
    PolicySessions::new(Arc::new(policy), "utrecht")
        .session(node, &ext)
        .await
        .unwrap()
        .0
}

/// The answer as sorted lines, or that there is none (an error).
async fn answer(ctx: &SessionContext, sql: &str) -> Option<Vec<String>> {
    let batches = ctx.sql(sql).await.ok()?.collect().await.ok()?;
    let text = pretty_format_batches(&batches).ok()?.to_string();
    // Header lines aside, the order of rows is not part of the answer.
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(str::to_string)
        .collect();
    lines.sort();
    Some(lines)
}

async fn check(sql: &str) -> Result<(), TestCaseError> {
    let node = node().await;
    let guarded = answer(&clerk(&node).await, sql).await;
    let expected = answer(&oracle().await, sql).await;
    prop_assert_eq!(&guarded, &expected, "{}", sql);
    if let Some(lines) = guarded {
        let text = lines.join("\n");
        for raw in ["amsterdam", "rotterdam", "AB", "@example.org", "| r1 "] {
            prop_assert!(!text.contains(raw), "{} leaked {}: {}", sql, raw, text);
        }
    }
    Ok(())
}

#[tokio::test]
async fn known_queries_see_only_filtered_masked_rows() {
    for sql in [
        "SELECT * FROM reports",
        "SELECT count(*) FROM reports WHERE postcode = '3500AB'",
        "SELECT count(*) FROM reports WHERE city <> 'utrecht'",
        "SELECT email FROM reports",
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'reports'",
        "SELECT max(postcode), min(reporter) FROM reports",
        "SELECT count(*) FROM reports WHERE reporter = '***'",
    ] {
        check(sql).await.unwrap();
        check(&sql.replace("reports", "reports_exact"))
            .await
            .unwrap();
    }
    // The plan shows the filter with the caller's own claim, never another value.
    let node = node().await;
    let explain = answer(&clerk(&node).await, "EXPLAIN SELECT * FROM reports")
        .await
        .unwrap()
        .join("\n");
    assert!(explain.contains("utrecht"), "{explain}");
    assert!(!explain.contains("amsterdam"), "{explain}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn answers_are_those_over_the_filtered_masked_table(
        select in prop::sample::select(vec![
            ("*", ""),
            ("city, postcode, reporter", ""),
            ("count(*)", ""),
            ("postcode, sum(n)", " GROUP BY postcode"),
            ("reporter, count(*)", " GROUP BY reporter"),
            ("city, count(DISTINCT postcode)", " GROUP BY city"),
            ("max(postcode), min(reporter), max(city)", ""),
            ("email", ""),
        ]),
        filter in prop::sample::select(vec![
            "",
            " WHERE city = 'amsterdam'",
            " WHERE postcode = '3501AB'",
            " WHERE postcode = '3501'",
            " WHERE postcode LIKE '35%'",
            " WHERE reporter = 'r3'",
            " WHERE reporter = '***' AND n > 2",
            " WHERE n IN (1, 2, 3)",
            " WHERE length(postcode) > 4",
        ]),
        source in prop::sample::select(vec![
            "reports",
            "(SELECT * FROM reports) AS t",
            "(SELECT * FROM reports UNION ALL SELECT * FROM reports) AS t",
            "(SELECT a.* FROM reports a JOIN reports b ON a.district = b.district) AS t",
            "(SELECT * FROM reports ORDER BY n DESC LIMIT 100) AS t",
        ]),
        cte in any::<bool>(),
        exact in any::<bool>(),
    ) {
        let (projection, group) = select;
        let source = if exact { source.replace("reports", "reports_exact") } else { source.to_string() };
        let sql = if cte {
            format!("WITH v AS (SELECT * FROM {source}) SELECT {projection} FROM v{filter}{group}")
        } else {
            format!("SELECT {projection} FROM {source}{filter}{group}")
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check(&sql))?;
    }
}
