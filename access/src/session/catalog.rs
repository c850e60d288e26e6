//! The policy-enforcing catalog wrappers: the caller's session sees the node's catalog
//! through them, so a dataset without a grant is neither listed nor readable, and a granted
//! one is the table its grant allows.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::aggregate::AggregateOnlyTable;
use crate::guard::GuardedTable;
use crate::policy::{AggregateSpec, Decision};

use super::view::View;

/// The session's catalogs: the node's own wrapped by the policy, peers' as the caller sees
/// them with their own token, any other passed through.
#[derive(Debug)]
pub(super) struct PolicyCatalogList {
    pub(super) inner: Arc<dyn CatalogProviderList>,
    /// Peers' catalogs as the caller sees them with their own token.
    pub(super) forwarded: HashMap<String, Arc<dyn CatalogProvider>>,
    pub(super) view: Arc<View>,
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

/// The node's own catalog as the caller sees it.
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

/// A schema of the node's catalog as the caller sees it: only granted tables, each wrapped
/// as its grant says.
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
            Decision::Read { .. } => self.read_table(name, table, &decision).map(Some),
            Decision::Aggregate {
                spec,
                row_filter,
                rule,
            } => {
                self.view
                    .record_aggregate(&self.name, name, *rule, spec, row_filter.as_ref());
                self.aggregate_table(name, table, spec, row_filter.as_deref())
                    .map(Some)
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

impl PolicySchema {
    /// `table` as raw access allows it: denied columns removed, masks and the row filter
    /// applied inside the scan (the table itself when the grant restricts nothing).
    fn read_table(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
        decision: &Decision,
    ) -> DfResult<Arc<dyn TableProvider>> {
        self.view.record(&self.name, name, Some(decision));
        let Decision::Read {
            denied_columns,
            masks,
            row_filter,
            ..
        } = decision
        else {
            unreachable!("read_table is called with a read decision");
        };
        if denied_columns.is_empty() && masks.is_empty() && row_filter.is_none() {
            return Ok(table);
        }
        let masks = masks
            .iter()
            .map(|(column, mask)| Ok((column.clone(), self.view.compile(&*table, mask)?)))
            .collect::<DfResult<_>>()?;
        let row_filter = match row_filter {
            Some(filter) => Some(self.view.compile(&*table, filter)?),
            None => None,
        };
        Ok(Arc::new(GuardedTable::new(
            table,
            denied_columns,
            masks,
            row_filter,
        )))
    }

    /// `table` as aggregate access allows it: its row filter applied inside the scan, and only
    /// aggregates of groups of at least the minimum size released.
    fn aggregate_table(
        &self,
        name: &str,
        table: Arc<dyn TableProvider>,
        spec: &AggregateSpec,
        row_filter: Option<&str>,
    ) -> DfResult<Arc<dyn TableProvider>> {
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
        Ok(Arc::new(AggregateOnlyTable::new(
            table,
            self.view.dataset(&self.name, name),
            spec.clone(),
        )))
    }
}
