//! Enforcement: every request is planned against a session whose catalog holds only what the
//! caller may read.
//!
//! The node's own catalog is wrapped per request: a dataset the policy does not grant is left out
//! of every listing (Flight SQL `GetTables`, `information_schema`, `SHOW TABLES`) and naming it
//! in a query fails with the policy's reason; a granted dataset with denied columns is a table
//! without those columns, so they exist nowhere in the caller's plan: not in `SELECT *`, not in
//! `EXPLAIN`, not in a filter. Peers' catalogs pass through: each peer applies its own policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use polder_flight_sql::{Error, QueryAudit, RequestSessions};
use tracing::error;

use crate::aggregate::{AggregateOnlyRule, AggregateOnlyTable};
use crate::audit::{AuditLog, Caller};

use crate::auth::Identity;
use crate::guard::{self, GuardedTable};
use crate::policy::{AggregateSpec, Decision, Policy};

/// The schema a node's datasets live in.
const DATASET_SCHEMA: &str = "public";

/// A catalog that answers each authenticated caller with the caller's own token, so that the
/// node behind it (a federation peer) applies its own policy to the caller.
///
/// Registered per catalog name with [`PolicySessions::forward`]; [`PolicySessions`] asks it for
/// the caller's view when it builds a request's session. The node implements it for each
/// federation peer (`PeerForward` in `node/src/startup.rs`, over
/// `polder_federation::PeerCatalog::for_caller`).
pub trait ForwardCatalog: Send + Sync {
    /// The catalog as the caller holding `token` sees it.
    fn for_caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Arc<dyn CatalogProvider>>;
}

/// Chooses each request's session by the caller's identity and the node's policy.
#[derive(Clone)]
pub struct PolicySessions {
    policy: Arc<Policy>,
    node: String,
    forwarding: Arc<RwLock<HashMap<String, Arc<dyn ForwardCatalog>>>>,
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
    pub fn forward(&self, name: impl Into<String>, forward: Arc<dyn ForwardCatalog>) {
        self.forwarding.write().insert(name.into(), forward);
    }
}

#[async_trait]
impl RequestSessions for PolicySessions {
    async fn session(
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
            Identity::User { token, .. } => {
                let forwarding: Vec<(String, Arc<dyn ForwardCatalog>)> = self
                    .forwarding
                    .read()
                    .iter()
                    .map(|(name, forward)| (name.clone(), Arc::clone(forward)))
                    .collect();
                // The peers' views for the caller, made concurrently.
                let views = forwarding.iter().map(|(name, forward)| async move {
                    (name.clone(), forward.for_caller(token).await)
                });
                futures::future::join_all(views).await.into_iter().collect()
            }
            Identity::Anonymous => HashMap::new(),
        };
        let suppressed = Arc::new(AtomicU64::new(0));
        let view = Arc::new(View {
            state: state.clone(),
            suppressed: Arc::clone(&suppressed),
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
            .with_analyzer_rule(Arc::new(AggregateOnlyRule::counting(suppressed)))
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
    /// The node's session, to compile the policy's expressions in.
    state: SessionState,
    /// Groups left out of the request's answers for being smaller than the minimum size.
    suppressed: Arc<AtomicU64>,
    policy: Arc<Policy>,
    identity: Identity,
    node: String,
    /// Each dataset the request's query named, with the grant (rule, denied columns) or none.
    decisions: Mutex<Vec<Value>>,
}

impl View {
    fn record(&self, schema: &str, table: &str, grant: Option<&Decision>) {
        let entry = match grant {
            Some(Decision::Read {
                denied_columns,
                masks,
                row_filter,
                rule,
            }) => json!({
                "dataset": format!("{}.{schema}.{table}", self.node),
                "access": "raw",
                "rule": rule,
                "denied_columns": denied_columns,
                "masked_columns": masks.keys().collect::<Vec<_>>(),
                "row_filter": row_filter,
                "personal": self.policy.is_personal(table),
            }),
            _ => json!({
                "dataset": format!("{}.{schema}.{table}", self.node),
                "access": "refused",
                "personal": self.policy.is_personal(table),
            }),
        };
        self.push(entry);
    }

    fn record_aggregate(
        &self,
        schema: &str,
        table: &str,
        rule: usize,
        spec: &AggregateSpec,
        row_filter: Option<&String>,
    ) {
        self.push(json!({
            "dataset": format!("{}.{schema}.{table}", self.node),
            "access": "aggregate",
            "rule": rule,
            "min_group_size": spec.min_group_size,
            "row_filter": row_filter,
            "personal": self.policy.is_personal(table),
        }));
    }

    fn push(&self, entry: Value) {
        let mut decisions = self.decisions.lock();
        if !decisions.contains(&entry) {
            decisions.push(entry);
        }
    }

    /// Compiles a policy expression of `table` for this caller (claims bound). It compiled at
    /// startup, so failing now is an internal error, and the query is refused.
    fn compile(&self, table: &dyn TableProvider, text: &str) -> DfResult<Expr> {
        let Identity::User { claims, .. } = &self.identity else {
            // Only rules, which anonymous callers never match, carry expressions.
            return Err(DataFusionError::External(Box::new(Error::Internal(
                "a policy expression for an anonymous caller".into(),
            ))));
        };
        guard::compile(&self.state, &table.schema(), text, claims).map_err(|e| {
            error!(error = %e, "a policy expression that compiled at startup fails");
            DataFusionError::External(Box::new(Error::Internal(
                "the access policy cannot be applied to this dataset".into(),
            )))
        })
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
            Value::Array(self.view.decisions.lock().clone()),
        );
        self.log.insert_statement(&mut record, sql);
        record
    }

    fn personal(&self) -> bool {
        self.view
            .decisions
            .lock()
            .iter()
            .any(|d| d.get("personal") == Some(&Value::Bool(true)))
    }
}

impl QueryAudit for AuditRecorder {
    fn refused(&self, sql: &str, error: &Error) {
        let mut record = self.base("refused", sql);
        record.insert("outcome".into(), json!(error.code()));
        let caller = match &self.view.identity {
            Identity::Anonymous => Caller::Anonymous,
            Identity::User { claims, .. } => Caller::Subject(&claims.sub),
        };
        if let Err(err) = self.log.append_refusal(record, caller) {
            error!(error = %err, "cannot write to the audit log");
        }
    }

    fn started(&self, sql: &str) -> polder_flight_sql::Result<()> {
        match self.log.append(self.base("query", sql)) {
            Ok(seq) => {
                *self.query.lock() = Some(seq);
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
        record.insert("query".into(), json!(*self.query.lock()));
        record.insert("outcome".into(), json!(failure.map_or("ok", Error::code)));
        record.insert("rows_out".into(), json!(rows));
        let suppressed = self.view.suppressed.load(Ordering::Relaxed);
        if self
            .view
            .decisions
            .lock()
            .iter()
            .any(|d| d.get("access") == Some(&json!("aggregate")))
        {
            record.insert("groups_suppressed".into(), json!(suppressed));
        }
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
        match &decision {
            Decision::Read {
                denied_columns,
                masks,
                row_filter,
                ..
            } => {
                self.view.record(&self.name, name, Some(&decision));
                if denied_columns.is_empty() && masks.is_empty() && row_filter.is_none() {
                    return Ok(Some(table));
                }
                let masks = masks
                    .iter()
                    .map(|(column, mask)| Ok((column.clone(), self.view.compile(&*table, mask)?)))
                    .collect::<DfResult<_>>()?;
                let row_filter = match row_filter {
                    Some(filter) => Some(self.view.compile(&*table, filter)?),
                    None => None,
                };
                Ok(Some(Arc::new(GuardedTable::new(
                    table,
                    denied_columns,
                    masks,
                    row_filter,
                ))))
            }
            Decision::Aggregate {
                spec,
                row_filter,
                rule,
            } => {
                self.view
                    .record_aggregate(&self.name, name, *rule, spec, row_filter.as_ref());
                let dataset = format!("{}.{}.{name}", self.view.node, self.name);
                let table = match row_filter {
                    Some(filter) => {
                        let filter = self.view.compile(&*table, filter)?;
                        Arc::new(GuardedTable::new(
                            table,
                            &[],
                            Default::default(),
                            Some(filter),
                        ))
                    }
                    None => table,
                };
                Ok(Some(Arc::new(AggregateOnlyTable::new(
                    table,
                    dataset,
                    spec.clone(),
                ))))
            }
            Decision::Refuse(err) => {
                self.view.record(&self.name, name, None);
                // A hidden dataset the caller may not read does not exist for the caller: the
                // same answer as for a missing table, so that its existence does not leak.
                if self.view.policy.is_hidden(name) {
                    return Ok(None);
                }
                Err(DataFusionError::External(Box::new(err.clone())))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
            && !(self.view.policy.is_hidden(name)
                && matches!(self.view.decide(&self.name, name), Decision::Refuse(_)))
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
            .await
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
            .await
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
        let err = sessions.session(&base, &extensions(None)).await.err();
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

    fn caller(roles: &[&str], groups: &[&str], org: Option<&str>) -> Identity {
        Identity::User {
            claims: Arc::new(Claims {
                sub: "carol".into(),
                iss: "i".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                org: org.map(Into::into),
                purpose: None,
            }),
            token: Arc::from("t"),
        }
    }

    const GUARDED: &str = r#"
        [[dataset]]
        name = "reports"
          [[dataset.rule]]
          roles = ["clerk"]
          access = "raw"
          row_filter = "city = $org"
          masks = { postcode = "left(postcode, 4)", reporter = "NULL" }
          [[dataset.rule]]
          roles = ["district"]
          access = "raw"
          row_filter = "array_has($groups, district)"
          deny_columns = ["reporter"]
    "#;

    async fn reports() -> SessionContext {
        let base = node().await;
        base.sql(
            "CREATE TABLE reports(city VARCHAR NOT NULL, district VARCHAR, postcode VARCHAR, reporter VARCHAR, n BIGINT) AS VALUES \
             ('utrecht', 'centrum', '3511AB', 'r1', 1), ('utrecht', 'oost', '3581CD', 'r2', 2), \
             ('utrecht', 'centrum', '3512EF', 'r3', 4), ('amsterdam', 'centrum', '1012GH', 'r4', 8)",
        )
        .await
        .unwrap();
        base
    }

    async fn guarded(identity: Identity) -> SessionContext {
        let base = reports().await;
        let policy = Policy::parse(GUARDED).unwrap();
        let mut tables = std::collections::BTreeMap::new();
        let table = base.table_provider("reports").await.unwrap();
        tables.insert("reports".to_string(), table.schema());
        tables.insert(
            "traffic".to_string(),
            base.table_provider("traffic").await.unwrap().schema(),
        );
        tables.insert(
            "air".to_string(),
            base.table_provider("air").await.unwrap().schema(),
        );
        policy.check(&tables, &base.state()).unwrap();
        let sessions = PolicySessions::new(Arc::new(policy), "utrecht");
        sessions
            .session(&base, &extensions(Some(identity)))
            .await
            .unwrap()
            .0
    }

    async fn single(ctx: &SessionContext, sql: &str) -> String {
        let lines = rows(ctx, sql).await.unwrap();
        lines[3].trim_matches(|c| c == '|' || c == ' ').to_string()
    }

    #[tokio::test]
    async fn row_filters_and_masks_hold_below_the_callers_query() {
        let clerk = guarded(caller(&["clerk"], &[], Some("utrecht"))).await;
        let all = rows(&clerk, "SELECT * FROM reports ORDER BY n")
            .await
            .unwrap();
        assert_eq!(all.len(), 3 + 3 + 1, "{all:?}");
        assert!(
            all.iter()
                .all(|l| !l.contains("amsterdam") && !l.contains("AB")),
            "{all:?}"
        );
        assert!(all[3].contains("3511") && !all[3].contains("r1"), "{all:?}");
        // The caller's filters, limits and aggregates see the restricted, masked rows only.
        assert_eq!(single(&clerk, "SELECT sum(n) FROM reports").await, "7");
        assert_eq!(single(&clerk, "SELECT count(*) FROM reports").await, "3");
        assert_eq!(
            single(
                &clerk,
                "SELECT count(*) FROM reports WHERE city = 'amsterdam'"
            )
            .await,
            "0"
        );
        assert_eq!(
            single(
                &clerk,
                "SELECT count(*) FROM reports WHERE postcode = '3511AB'"
            )
            .await,
            "0"
        );
        assert_eq!(
            single(
                &clerk,
                "SELECT count(*) FROM reports WHERE postcode = '3511'"
            )
            .await,
            "1"
        );
        assert_eq!(
            single(&clerk, "SELECT count(reporter) FROM reports").await,
            "0"
        );
        assert_eq!(
            single(
                &clerk,
                "SELECT count(*) FROM (SELECT * FROM reports LIMIT 10)"
            )
            .await,
            "3"
        );
        let one = rows(&clerk, "SELECT city FROM reports LIMIT 1")
            .await
            .unwrap();
        assert!(one[3].contains("utrecht"), "{one:?}");
        // Joins and subqueries too.
        assert_eq!(
            single(
                &clerk,
                "SELECT count(*) FROM reports a JOIN reports b ON a.district = b.district"
            )
            .await,
            "5"
        );

        // A claim is a bound value: no claim, no rows; a quote in a claim is just a character.
        let none = guarded(caller(&["clerk"], &[], None)).await;
        assert_eq!(single(&none, "SELECT count(*) FROM reports").await, "0");
        let sly = guarded(caller(&["clerk"], &[], Some("x' OR '1'='1"))).await;
        assert_eq!(single(&sly, "SELECT count(*) FROM reports").await, "0");

        // A list claim: the districts the caller's groups name, in any city.
        let district = guarded(caller(&["district"], &["centrum"], None)).await;
        assert_eq!(single(&district, "SELECT sum(n) FROM reports").await, "13");
        let err = rows(&district, "SELECT reporter FROM reports")
            .await
            .unwrap_err();
        assert!(matches!(Error::from(err), Error::NotFound(_)));
    }

    #[tokio::test]
    async fn aggregate_access_can_carry_a_row_filter() {
        let base = reports().await;
        let policy = Policy::parse(
            r#"
            [[dataset]]
            name = "reports"
              [dataset.aggregate]
              unit = "reporter"
              min_group_size = 2
              dimensions = ["district"]
              functions = ["sum"]
              [[dataset.rule]]
              access = "aggregate"
              row_filter = "city = $org"
            "#,
        )
        .unwrap();
        let sessions = PolicySessions::new(Arc::new(policy), "utrecht");
        let ctx = sessions
            .session(&base, &extensions(Some(caller(&[], &[], Some("utrecht")))))
            .await
            .unwrap()
            .0;
        // centrum has r1, r3 in utrecht (r4 is amsterdam's); oost has one reporter.
        let out = rows(
            &ctx,
            "SELECT district, sum(n) AS s FROM reports GROUP BY district",
        )
        .await
        .unwrap();
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(
            out[3].contains("centrum") && out[3].contains(" 5 "),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn policy_expressions_are_checked_at_startup() {
        let base = reports().await;
        let mut tables = std::collections::BTreeMap::new();
        tables.insert(
            "reports".to_string(),
            base.table_provider("reports").await.unwrap().schema(),
        );
        for (rule, expected) in [
            (r#"row_filter = "cty = $org""#, "cty"),
            (r#"row_filter = "city = $team""#, "unknown parameter $team"),
            (r#"row_filter = "n + 1""#, "must be a condition"),
            (r#"row_filter = "no_such_fn(city)""#, "no_such_fn"),
            (r#"row_filter = "n > (SELECT 1)""#, "subquery"),
            (r#"row_filter = "sum(n) > 1""#, "aggregate"),
            (r#"row_filter = "city = = 1""#, "city = = 1"),
            (
                r#"masks = { postcode = "make_array(1)" }"#,
                "not the same kind",
            ),
            (r#"masks = { n = "postcode" }"#, "not the same kind"),
            (r#"masks = { postcod = "NULL" }"#, "'postcod'"),
        ] {
            let text = format!(
                "[[dataset]]\nname = \"reports\"\n[[dataset.rule]]\naccess = \"raw\"\n{rule}\n"
            );
            let err = Policy::parse(&text)
                .unwrap()
                .check(&tables, &base.state())
                .err()
                .unwrap_or_else(|| panic!("{rule} was accepted"))
                .to_string();
            assert!(err.contains(expected), "{rule}: {err}");
            assert!(err.contains("rule 1 of dataset 'reports'"), "{rule}: {err}");
        }
    }
}
