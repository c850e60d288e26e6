//! Constant folding held back for large bounded results.

use std::cell::Cell;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Whether `rule` is a [`FoldingGuard`] already.
pub(super) fn is_guard(rule: &(dyn OptimizerRule + Send + Sync)) -> bool {
    format!("{rule:?}").starts_with("FoldingGuard")
}

thread_local! {
    /// Set while [`FoldingGuard`]'s rule runs on this thread (rules run synchronously).
    static FOLDING: Cell<bool> = const { Cell::new(false) };
}

/// DataFusion's `simplify_expressions` rule, run with constant folding of large bounded results
/// turned off: such a call stays in the plan instead of becoming a literal that each batch
/// would copy once per row.
#[derive(Debug)]
pub struct FoldingGuard(Arc<dyn OptimizerRule + Send + Sync>);

impl FoldingGuard {
    /// `rule` (DataFusion's `simplify_expressions`), guarded.
    pub fn new(rule: Arc<dyn OptimizerRule + Send + Sync>) -> Self {
        Self(rule)
    }
}

/// Whether a [`FoldingGuard`]'s rule is running on this thread: a call evaluated now is being
/// folded into a constant.
pub(super) fn folding() -> bool {
    FOLDING.get()
}

impl OptimizerRule for FoldingGuard {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.0.apply_order()
    }

    #[allow(deprecated)]
    fn supports_rewrite(&self) -> bool {
        self.0.supports_rewrite()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        struct Reset(bool);
        impl Drop for Reset {
            fn drop(&mut self) {
                FOLDING.set(self.0);
            }
        }
        let _reset = Reset(FOLDING.replace(true));
        self.0.rewrite(plan, config)
    }
}
