//! One caller's view of the node's datasets for one request, and what the policy decided for
//! each dataset the request named (for the audit record).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use parking_lot::Mutex;
use polder_flight_sql::Error;
use tracing::error;

use crate::audit::record::{Access, DatasetAccess};
use crate::auth::Identity;
use crate::guard;
use crate::policy::{AggregateSpec, Decision, Policy};

/// The schema a node's datasets live in.
const DATASET_SCHEMA: &str = "public";

/// One caller's view of the node's datasets, and what the policy decided for it.
#[derive(Debug)]
pub(super) struct View {
    /// The node's session, to compile the policy's expressions in.
    pub(super) state: SessionState,
    /// Groups left out of the request's answers for being smaller than the minimum size.
    pub(super) suppressed: Arc<AtomicU64>,
    pub(super) policy: Arc<Policy>,
    pub(super) identity: Identity,
    pub(super) node: String,
    /// Each dataset the request's query named, with the grant (rule, denied columns) or none.
    pub(super) decisions: Mutex<Vec<DatasetAccess>>,
}

impl View {
    /// The full name of a dataset: `node.schema.table`.
    pub(super) fn dataset(&self, schema: &str, table: &str) -> String {
        format!("{}.{schema}.{table}", self.node)
    }

    /// Notes that the query named `schema.table`, with raw access as `grant` says or refused.
    pub(super) fn record(&self, schema: &str, table: &str, grant: Option<&Decision>) {
        let access = match grant {
            Some(Decision::Read {
                denied_columns,
                masks,
                row_filter,
                rule,
            }) => Access::Raw {
                rule: *rule,
                denied_columns: denied_columns.clone(),
                masked_columns: masks.keys().cloned().collect(),
                row_filter: row_filter.clone(),
            },
            _ => Access::Refused,
        };
        self.push(schema, table, access);
    }

    /// Notes that the query named `schema.table`, with aggregate access by `rule`.
    pub(super) fn record_aggregate(
        &self,
        schema: &str,
        table: &str,
        rule: usize,
        spec: &AggregateSpec,
        row_filter: Option<&String>,
    ) {
        let access = Access::Aggregate {
            rule,
            min_group_size: spec.min_group_size,
            row_filter: row_filter.cloned(),
        };
        self.push(schema, table, access);
    }

    fn push(&self, schema: &str, table: &str, access: Access) {
        let entry = DatasetAccess {
            dataset: self.dataset(schema, table),
            access,
            personal: self.policy.is_personal(table),
        };
        let mut decisions = self.decisions.lock();
        if !decisions.contains(&entry) {
            decisions.push(entry);
        }
    }

    /// Whether a dataset the query named is personal data.
    pub(super) fn touches_personal_data(&self) -> bool {
        self.decisions.lock().iter().any(|d| d.personal)
    }

    /// Whether a dataset the query named is read as aggregates only.
    pub(super) fn aggregates(&self) -> bool {
        self.decisions
            .lock()
            .iter()
            .any(|d| matches!(d.access, Access::Aggregate { .. }))
    }

    /// Compiles a policy expression of `table` for this caller (claims bound). It compiled at
    /// startup, so failing now is an internal error, and the query is refused.
    pub(super) fn compile(&self, table: &dyn TableProvider, text: &str) -> DfResult<Expr> {
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

    /// The policy's decision on `schema.table` for this caller.
    pub(super) fn decide(&self, schema: &str, table: &str) -> Decision {
        if schema == DATASET_SCHEMA {
            self.policy.decide(&self.identity, table)
        } else {
            // Nothing outside the dataset schema is granted by the policy.
            self.policy
                .decide(&self.identity, &format!("{schema}.{table}"))
        }
    }
}
