//! Enforcement: every request is planned against a session whose catalog holds only what the
//! caller may read.
//!
//! The node's own catalog is wrapped per request: a dataset the policy does not grant is left out
//! of every listing (Flight SQL `GetTables`, `information_schema`, `SHOW TABLES`) and naming it
//! in a query fails with the policy's reason; a granted dataset with denied columns is a table
//! without those columns, so they exist nowhere in the caller's plan: not in `SELECT *`, not in
//! `EXPLAIN`, not in a filter. Peers' catalogs pass through: each peer applies its own policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value, json};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use polder_flight_sql::{Error, QueryAudit, RequestSessions};
use tracing::error;

use crate::aggregate::{AggregateOnlyRule, AggregateOnlyTable};
use crate::audit::{self, AuditLog};

use crate::auth::Identity;
use crate::policy::{AggregateSpec, Decision, Policy};

/// The schema a node's datasets live in.
const DATASET_SCHEMA: &str = "public";

/// Makes the view of a catalog (a federation peer) that answers with a caller's own token.
pub type Forward = Arc<dyn Fn(&str) -> Arc<dyn CatalogProvider> + Send + Sync>;

/// Chooses each request's session by the caller's identity and the node's policy.
#[derive(Clone)]
pub struct PolicySessions {
    policy: Arc<Policy>,
    node: String,
    forwarding: Arc<RwLock<HashMap<String, Forward>>>,
    audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for PolicySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySessions")
            .field("node", &self.node)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PolicySessions {
    /// Enforces `policy` on the catalog `node` (the node's own datasets).
    pub fn new(policy: Arc<Policy>, node: impl Into<String>) -> Self {
        Self {
            policy,
            node: node.into(),
            forwarding: Arc::default(),
            audit: None,
        }
    }

    /// Records every query in `log` (see [`crate::audit`]).
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// From now on, an authenticated caller's requests see the catalog `name` as `forward`
    /// makes it from the caller's token: a peer then applies its own policy to the caller.
    /// Callers without a token see the catalog as the node does.
    pub fn forward(&self, name: impl Into<String>, forward: Forward) {
        self.forwarding
            .write()
            .expect("lock")
            .insert(name.into(), forward);
    }
}

impl RequestSessions for PolicySessions {
    fn session(
        &self,
        base: &SessionContext,
        extensions: &tonic::Extensions,
    ) -> polder_flight_sql::Result<(SessionContext, Option<Arc<dyn QueryAudit>>)> {
        // Fail closed: without an identity from the authentication layer nothing is readable.
        let identity = extensions.get::<Identity>().cloned().ok_or_else(|| {
            Error::Unauthenticated("unauthenticated: no identity established".into())
        })?;
        let state = base.state();
        let forwarded = match &identity {
            Identity::User { token, .. } => self
                .forwarding
                .read()
                .expect("lock")
                .iter()
                .map(|(name, forward)| (name.clone(), forward(token)))
                .collect(),
            Identity::Anonymous => HashMap::new(),
        };
        let view = Arc::new(View {
            policy: Arc::clone(&self.policy),
            identity,
            node: self.node.clone(),
            decisions: Mutex::default(),
        });
        let catalogs = Arc::new(PolicyCatalogList {
            inner: Arc::clone(state.catalog_list()),
            forwarded,
            view: Arc::clone(&view),
        });
        let state = SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(catalogs)
            .with_analyzer_rule(Arc::new(AggregateOnlyRule))
            .build();
        let audit = self.audit.as_ref().map(|log| {
            Arc::new(AuditRecorder {
                log: Arc::clone(log),
                view,
                query: Mutex::default(),
            }) as Arc<dyn QueryAudit>
        });
        Ok((SessionContext::new_with_state(state), audit))
    }
}

/// One caller's view of the node's datasets, and what the policy decided for it.
#[derive(Debug)]
struct View {
    policy: Arc<Policy>,
    identity: Identity,
    node: String,
    /// Each dataset the request's query named, with the grant (rule, denied columns) or none.
    decisions: Mutex<Vec<Value>>,
}

impl View {
    fn record(&self, schema: &str, table: &str, grant: Option<(Option<usize>, &[String])>) {
        let entry = match grant {
            Some((rule, denied)) => json!({
                "dataset": format!("{}.{schema}.{table}", self.node),
                "access": "raw",
                "rule": rule,
                "denied_columns": denied,
                "personal": self.policy.is_personal(table),
            }),
            None => json!({
                "dataset": format!("{}.{schema}.{table}", self.node),
                "access": "refused",
                "personal": self.policy.is_personal(table),
            }),
        };
        self.push(entry);
    }

    fn record_aggregate(&self, schema: &str, table: &str, rule: usize, spec: &AggregateSpec) {
        self.push(json!({
            "dataset": format!("{}.{schema}.{table}", self.node),
            "access": "aggregate",
            "rule": rule,
            "min_group_size": spec.min_group_size,
            "personal": self.policy.is_personal(table),
        }));
    }

    fn push(&self, entry: Value) {
        let mut decisions = self.decisions.lock().expect("lock");
        if !decisions.contains(&entry) {
            decisions.push(entry);
        }
    }

    fn decide(&self, schema: &str, table: &str) -> Decision {
        if schema == DATASET_SCHEMA {
            self.policy.decide(&self.identity, table)
        } else {
            // Nothing outside the dataset schema is granted by the policy.
            self.policy
                .decide(&self.identity, &format!("{schema}.{table}"))
        }
    }
}

/// Writes one request's query to the audit log: who, why, which datasets under which grant,
/// the statement's shape and hash, the outcome and the rows sent.
#[derive(Debug)]
struct AuditRecorder {
    log: Arc<AuditLog>,
    view: Arc<View>,
    /// The sequence number of the query's start record.
    query: Mutex<Option<u64>>,
}

impl AuditRecorder {
    fn base(&self, kind: &str, sql: &str) -> Map<String, Value> {
        let (subject, purpose) = match &self.view.identity {
            Identity::Anonymous => ("anonymous".to_string(), None),
            Identity::User { claims, .. } => (claims.sub.clone(), claims.purpose.clone()),
        };
        let mut record = Map::new();
        record.insert("kind".into(), json!(kind));
        record.insert(
            "time".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        record.insert("subject".into(), json!(subject));
        record.insert("purpose".into(), json!(purpose));
        record.insert(
            "datasets".into(),
            Value::Array(self.view.decisions.lock().expect("lock").clone()),
        );
        record.insert("statement".into(), json!(audit::strip_literals(sql)));
        record.insert("statement_sha256".into(), json!(audit::statement_hash(sql)));
        record
    }

    fn personal(&self) -> bool {
        self.view
            .decisions
            .lock()
            .expect("lock")
            .iter()
            .any(|d| d.get("personal") == Some(&Value::Bool(true)))
    }
}

impl QueryAudit for AuditRecorder {
    fn refused(&self, sql: &str, error: &Error) {
        let mut record = self.base("refused", sql);
        record.insert("outcome".into(), json!(error.code()));
        if let Err(err) = self.log.append(record) {
            error!(error = %err, "cannot write to the audit log");
        }
    }

    fn started(&self, sql: &str) -> polder_flight_sql::Result<()> {
        match self.log.append(self.base("query", sql)) {
            Ok(seq) => {
                *self.query.lock().expect("lock") = Some(seq);
                Ok(())
            }
            Err(err) => {
                error!(error = %err, "cannot write to the audit log");
                if self.personal() {
                    Err(Error::Upstream(
                        "the audit log cannot be written: queries on personal data are refused until it can".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn finished(&self, rows: u64, failure: Option<&Error>) {
        let mut record = Map::new();
        record.insert("kind".into(), json!("query_end"));
        record.insert(
            "time".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        record.insert("query".into(), json!(*self.query.lock().expect("lock")));
        record.insert("outcome".into(), json!(failure.map_or("ok", Error::code)));
        record.insert("rows_out".into(), json!(rows));
        if let Err(err) = self.log.append(record) {
            error!(error = %err, "cannot write to the audit log");
        }
    }
}

#[derive(Debug)]
struct PolicyCatalogList {
    inner: Arc<dyn CatalogProviderList>,
    /// Peers' catalogs as the caller sees them with their own token.
    forwarded: HashMap<String, Arc<dyn CatalogProvider>>,
    view: Arc<View>,
}

impl CatalogProviderList for PolicyCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // A request's session cannot add catalogs (the node is read-only anyway).
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if let Some(forwarded) = self.forwarded.get(name) {
            return Some(Arc::clone(forwarded));
        }
        let inner = self.inner.catalog(name)?;
        if name != self.view.node {
            return Some(inner);
        }
        Some(Arc::new(PolicyCatalog {
            inner,
            view: Arc::clone(&self.view),
        }))
    }
}

#[derive(Debug)]
struct PolicyCatalog {
    inner: Arc<dyn CatalogProvider>,
    view: Arc<View>,
}

impl CatalogProvider for PolicyCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.inner.schema_names()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(PolicySchema {
            inner: self.inner.schema(name)?,
            name: name.to_string(),
            view: Arc::clone(&self.view),
        }))
    }
}

#[derive(Debug)]
struct PolicySchema {
    inner: Arc<dyn SchemaProvider>,
    name: String,
    view: Arc<View>,
}

#[async_trait]
impl SchemaProvider for PolicySchema {
    fn table_names(&self) -> Vec<String> {
        self.inner
            .table_names()
            .into_iter()
            .filter(|t| {
                matches!(
                    self.view.decide(&self.name, t),
                    Decision::Read { .. } | Decision::Aggregate { .. }
                )
            })
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let decision = self.view.decide(&self.name, name);
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        match decision {
            Decision::Read {
                denied_columns,
                rule,
            } => {
                self.view
                    .record(&self.name, name, Some((rule, &denied_columns)));
                if denied_columns.is_empty() {
                    Ok(Some(table))
                } else {
                    Ok(Some(Arc::new(RestrictedTable::new(table, &denied_columns))))
                }
            }
            Decision::Aggregate { spec, rule } => {
                self.view.record_aggregate(&self.name, name, rule, &spec);
                let dataset = format!("{}.{}.{name}", self.view.node, self.name);
                Ok(Some(Arc::new(AggregateOnlyTable::new(
                    table, dataset, spec,
                ))))
            }
            Decision::Refuse(err) => {
                self.view.record(&self.name, name, None);
                Err(DataFusionError::External(Box::new(err)))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A table with some columns removed: its schema lacks them and scans never read them.
#[derive(Debug)]
struct RestrictedTable {
    inner: Arc<dyn TableProvider>,
    /// The inner table's index of each visible column.
    visible: Vec<usize>,
    schema: SchemaRef,
}

impl RestrictedTable {
    fn new(inner: Arc<dyn TableProvider>, denied: &[String]) -> Self {
        let full = inner.schema();
        let visible: Vec<usize> = full
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !denied.contains(f.name()))
            .map(|(i, _)| i)
            .collect();
        let schema = Arc::new(
            full.project(&visible)
                .expect("indices of the table's own fields"),
        );
        Self {
            inner,
            visible,
            schema,
        }
    }
}

#[async_trait]
impl TableProvider for RestrictedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters can only name visible columns, which keep their names in the inner table.
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        let inner = self.inner.statistics()?;
        Some(Statistics {
            num_rows: inner.num_rows,
            total_byte_size: inner.total_byte_size,
            column_statistics: self
                .visible
                .iter()
                .filter_map(|&i| inner.column_statistics.get(i).cloned())
                .collect(),
        })
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns: Vec<usize> = match projection {
            Some(projection) => projection.iter().map(|&i| self.visible[i]).collect(),
            None => self.visible.clone(),
        };
        self.inner.scan(state, Some(&columns), filters, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Claims;
    use futures::StreamExt;

    async fn node() -> SessionContext {
        let config = datafusion::prelude::SessionConfig::new()
            .with_default_catalog_and_schema("utrecht", "public")
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        ctx.sql("CREATE TABLE traffic(segment_id BIGINT, hour INT, cars BIGINT) AS VALUES (1, 8, 10), (2, 9, 20)")
            .await
            .unwrap();
        ctx.sql("CREATE TABLE air(station VARCHAR, pm25 DOUBLE) AS VALUES ('a', 1.5)")
            .await
            .unwrap();
        ctx
    }

    fn policy() -> Arc<Policy> {
        Arc::new(
            Policy::parse(
                r#"
                [[dataset]]
                name = "air"
                public = true
                [[dataset]]
                name = "traffic"
                  [[dataset.rule]]
                  groups = ["mobility"]
                  access = "raw"
                  deny_columns = ["segment_id"]
                "#,
            )
            .unwrap(),
        )
    }

    fn extensions(identity: Option<Identity>) -> tonic::Extensions {
        let mut ext = tonic::Extensions::new();
        if let Some(identity) = identity {
            ext.insert(identity);
        }
        ext
    }

    fn member() -> Identity {
        Identity::User {
            claims: Arc::new(Claims {
                sub: "alice".into(),
                iss: "i".into(),
                groups: vec!["mobility".into()],
                roles: vec![],
                org: None,
                purpose: None,
            }),
            token: Arc::from("t"),
        }
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, DataFusionError> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        Ok(text.lines().map(str::to_string).collect())
    }

    #[tokio::test]
    async fn callers_see_only_what_they_are_granted() {
        let base = node().await;
        let sessions = PolicySessions::new(policy(), "utrecht");

        let anonymous = sessions
            .session(&base, &extensions(Some(Identity::Anonymous)))
            .unwrap()
            .0;
        let tables = rows(
            &anonymous,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .await
        .unwrap();
        assert!(tables.iter().any(|l| l.contains("air")));
        assert!(!tables.iter().any(|l| l.contains("traffic")), "{tables:?}");
        let err = rows(&anonymous, "SELECT * FROM traffic").await.unwrap_err();
        assert!(
            matches!(Error::from(err), Error::Unauthenticated(_)),
            "anonymous must authenticate for a non-public dataset"
        );

        let alice = sessions
            .session(&base, &extensions(Some(member())))
            .unwrap()
            .0;
        let all = rows(&alice, "SELECT * FROM traffic ORDER BY hour")
            .await
            .unwrap();
        assert!(
            all[1].contains("hour") && !all[1].contains("segment_id"),
            "{all:?}"
        );
        let err = rows(&alice, "SELECT segment_id FROM traffic")
            .await
            .unwrap_err();
        assert!(matches!(Error::from(err), Error::NotFound(_)));
        let columns = rows(
            &alice,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'traffic'",
        )
        .await
        .unwrap();
        assert!(
            !columns.iter().any(|l| l.contains("segment_id")),
            "{columns:?}"
        );
        let sum = rows(&alice, "SELECT sum(cars) AS s FROM traffic WHERE hour > 8")
            .await
            .unwrap();
        assert!(sum.iter().any(|l| l.contains("20")), "{sum:?}");

        // Without an identity (no authentication layer ran), nothing at all.
        let err = sessions.session(&base, &extensions(None)).err();
        assert!(matches!(err, Some(Error::Unauthenticated(_))));
        // The base session is untouched.
        let mut stream = base
            .sql("SELECT segment_id FROM traffic")
            .await
            .unwrap()
            .execute_stream()
            .await
            .unwrap();
        assert!(stream.next().await.unwrap().is_ok());
    }
}
