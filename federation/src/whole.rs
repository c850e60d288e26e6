//! A remote table read whole: what a federation without pushdown does. Every scan asks the peer
//! for all rows and all columns (`SELECT * FROM t`) and leaves projection, filters, joins and
//! aggregates to the local plan. Only for measuring what pushdown gains.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{SQLTableSource, VirtualExecutionPlan};

/// A peer's table, scanned whole.
#[derive(Debug)]
pub(crate) struct WholeTable {
    pub(crate) source: Arc<SQLTableSource>,
}

#[async_trait]
impl TableProvider for WholeTable {
    fn schema(&self) -> SchemaRef {
        datafusion::logical_expr::TableSource::schema(self.source.as_ref())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let adaptor = FederatedTableProviderAdaptor::new(Arc::clone(&self.source) as Arc<_>);
        let plan = LogicalPlanBuilder::scan(
            self.source.table_reference(),
            provider_as_source(Arc::new(adaptor)),
            None,
        )?
        .build()?;
        let schema = self.schema();
        let whole: Arc<dyn ExecutionPlan> = Arc::new(VirtualExecutionPlan::new(
            plan,
            Arc::clone(&self.source.provider.executor),
            Statistics::new_unknown(&schema),
        ));
        match projection {
            None => Ok(whole),
            Some(columns) => {
                let exprs = columns
                    .iter()
                    .map(|&i| {
                        let name = schema.field(i).name().clone();
                        (Arc::new(Column::new(&name, i)) as Arc<_>, name)
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(ProjectionExec::try_new(exprs, whole)?))
            }
        }
    }
}

/// A peer's table as the federation planner sees it: every filter on it is taken (`Exact`), so
/// that DataFusion moves filters into the scan, where they travel to the peer with it inside the
/// remote part's SQL. (A filter left above the scan would be unparsed with the table's own name
/// even where the query gave the table an alias.) It is never scanned here: the federation rule
/// replaces every plan part that reads it by a remote query.
#[derive(Debug)]
pub(crate) struct FederatedOnly {
    pub(crate) source: Arc<SQLTableSource>,
}

#[async_trait]
impl TableProvider for FederatedOnly {
    fn schema(&self) -> SchemaRef {
        datafusion::logical_expr::TableSource::schema(self.source.as_ref())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(datafusion::error::DataFusionError::Internal(format!(
            "the remote table {} was planned outside a federated part",
            self.source.table_reference()
        )))
    }
}
