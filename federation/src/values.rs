//! Inline rows (`VALUES`) stay at the coordinator.
//!
//! datafusion-federation assigns each part of a plan to the source of its table scans; a
//! `VALUES` list has none, so a join of a peer's table with inline rows went to the peer whole,
//! and the SQL unparser cannot write `VALUES` inside a join (`Unsupported operator: Values`).
//! [`LocalValues`] turns every `VALUES` list into a scan of a local table holding exactly that
//! list, under a projection that keeps its column names: the federation then sees a local
//! source, sends the peer only its own part, and joins the inline rows at the coordinator.
//!
//! Relations the optimizer proved empty (a join `ON` a condition never true) are no source
//! either, and the unparser writes them as nothing at all (`SELECT min(t8.p_partkey)`, no FROM
//! clause): [`local_empty_relations`] turns them into scans of an empty local table likewise.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column as DFColumn, DFSchema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion_federation::get_table_source;

/// The name the local table of inline rows is scanned as (its columns keep their names).
const TABLE: &str = "polder_values";

/// Rewrites every `VALUES` list into a scan of [`ValuesTable`] (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct LocalValues;

impl OptimizerRule for LocalValues {
    fn name(&self) -> &str {
        "polder_local_values"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|node| {
            let LogicalPlan::Values(values) = node else {
                return Ok(Transformed::no(node));
            };
            let schema = Arc::clone(values.schema.inner());
            let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
            let table = Arc::new(ValuesTable {
                schema,
                rows: values.values,
            });
            let restored: Vec<Expr> = names
                .iter()
                .map(|name| Expr::Column(DFColumn::new(Some(TABLE), name)).alias(name))
                .collect();
            let scan = LogicalPlanBuilder::scan(TABLE, provider_as_source(table), None)?
                .project(restored)?
                .build()?;
            Ok(Transformed::yes(scan))
        })
    }
}

/// The name an empty relation is scanned as (its columns are named by position).
const EMPTY: &str = "polder_empty";

/// `plan` with every relation proven empty that has columns (`EmptyRelation` without rows) as
/// a scan of an empty local table, under a projection that restores its columns' names and
/// qualifiers, when `plan` reads a peer's table (see the module docs). Plans without peers
/// keep their empty relations, which the optimizer propagates.
pub(crate) fn local_empty_relations(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    if !reads_a_peer(&plan) {
        return Ok(Transformed::no(plan));
    }
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::EmptyRelation(empty) = &node else {
            return Ok(Transformed::no(node));
        };
        if empty.produce_one_row || empty.schema.fields().is_empty() {
            return Ok(Transformed::no(node));
        }
        let fields: Vec<Field> = empty
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), f.is_nullable()))
            .collect();
        let table = Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))));
        let restored: Vec<Expr> = empty
            .schema
            .iter()
            .enumerate()
            .map(|(i, (qualifier, field))| {
                Expr::Column(DFColumn::new(Some(EMPTY), format!("c{i}")))
                    .alias_qualified(qualifier.cloned(), field.name())
            })
            .collect();
        let scan = LogicalPlanBuilder::scan(EMPTY, provider_as_source(table), None)?
            .project(restored)?
            .build()?;
        Ok(Transformed::yes(scan))
    })
}

/// Whether `plan` scans a table of a peer (a table the federation sends parts of plans to).
fn reads_a_peer(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(Some(_)) = get_table_source(&scan.source)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A local table holding one `VALUES` list: scanning it evaluates the list's expressions as
/// DataFusion's own plan of `VALUES` does (not through the optimizer, which would turn the list
/// into this table again).
#[derive(Debug)]
struct ValuesTable {
    schema: SchemaRef,
    rows: Vec<Vec<Expr>>,
}

#[async_trait]
impl TableProvider for ValuesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let no_input = DFSchema::empty();
        let rows = self
            .rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|expr| state.create_physical_expr(expr.clone(), &no_input))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let all: Arc<dyn ExecutionPlan> =
            MemorySourceConfig::try_new_as_values(Arc::clone(&self.schema), rows)?;
        match projection {
            None => Ok(all),
            Some(columns) => {
                let exprs = columns
                    .iter()
                    .map(|&i| {
                        let name = self.schema.field(i).name().clone();
                        (Arc::new(Column::new(&name, i)) as _, name)
                    })
                    .collect::<Vec<_>>();
                Ok(Arc::new(ProjectionExec::try_new(exprs, all)?))
            }
        }
    }
}
