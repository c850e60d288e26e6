//! Scalar functions whose output size the caller controls, bounded by the session's memory limit.
//!
//! DataFusion's memory pool accounts the buffers of operators (sorts, joins, aggregates), not
//! the arrays a scalar function returns: `repeat('x', 1500000000)` allocates 1.5 GB whatever
//! the limit. [`bound_functions`] replaces, in a [`SessionState`], each function whose output
//! can be much larger than its inputs with a [`BoundedFunction`]: the same function (name,
//! aliases, signature, return type, simplification, documentation are delegated), except that
//! each call first computes from its argument values an upper bound of the bytes it returns for
//! the whole batch, and refuses with [`DataFusionError::ResourcesExhausted`](datafusion::error::DataFusionError::ResourcesExhausted) (gRPC
//! `RESOURCE_EXHAUSTED`) naming the function when the bound exceeds [`call_budget`]: a quarter
//! of the memory limit. A quarter, because a call's output lives next to its inputs (at most one
//! budget when they come from another bounded call), the batch that holds it, and its IPC
//! encoding on the way to the client.
//!
//! A scalar argument stands for every row of the batch, so `repeat('x', 100000000)` over 100
//! rows counts a hundred times: whoever consumes a scalar result (a projection, another
//! function) may expand it to one value per row. Each call of a nested expression
//! (`repeat(repeat('x', 40000), 40000)`) is checked on its own inputs, so every step of a chain
//! stays within the budget.
//!
//! Planning folds constant expressions into literals, evaluated once for one row; a literal is
//! then copied into every row of every batch it meets. So while the optimizer folds constants
//! ([`FoldingGuard`]), a bounded call whose result would be larger than the budget divided by
//! the batch size is not folded (the call stays in the plan, and runs, checked, for each batch).
//!
//! Which functions are bounded, and why (DataFusion 55's default functions):
//! - the output size is a number argument: `repeat`, `lpad`, `rpad`, `array_repeat`,
//!   `array_resize`, `range` and `generate_series` (their scalar, list-returning forms; the
//!   table function `generate_series` in `FROM` streams batches and needs no bound);
//! - the output is a product of inputs: `replace` and `regexp_replace` (each match of a short
//!   pattern becomes a long replacement), `array_to_string` (the delimiter once per element);
//! - the output is a sum or small multiple of the inputs, which chains (a column concatenated
//!   with itself in each of a series of subqueries) double step by step: `concat`,
//!   `overlay` (a negative length copies the string twice), `encode` (hex doubles),
//!   `concat_ws` (the separator once between each two values),
//!   `array_concat`, `array_append`, `array_prepend`.
//!
//! Not bounded: functions whose output is at most their input or of fixed size per row
//! (`substr`, `trim`, `split_part`, `string_to_array`, `to_hex` at most 16 characters, hashes,
//! `make_array` and `named_struct`, which only gather arguments already in memory, `upper` and
//! `lower`). `string_agg` is an aggregate: its accumulators report their size to the
//! aggregation's memory reservation, which the pool accounts. The `||` operator on strings is a
//! binary expression, not a function: `BoundCalls` replaces it by [`StringConcat`], the same
//! kernel as a function with the same column name (`a || b`), bounded like `concat`. A
//!
//! The parts: [`Growth`] says how each function's output grows (`growth.rs`, measuring the
//! arguments in `arg.rs`), [`BoundedFunction`] wraps a function with the check, `BoundCalls`
//! bounds the calls planned without the registry (with [`StringConcat`] for `||`), and
//! [`FoldingGuard`] holds back the folding of large constants.

mod arg;
mod calls;
mod concat;
mod folding;
mod function;
mod growth;

use std::sync::Arc;

use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::optimizer::OptimizerRule;

use crate::join_memory::InMemoryJoins;
use calls::BoundCalls;
pub use concat::StringConcat;
pub use folding::FoldingGuard;
use folding::is_guard;
pub use function::BoundedFunction;
pub use growth::Growth;

/// The bytes one call of a bounded function may return for a batch: a quarter of the memory
/// limit of `runtime`'s pool, `None` when the pool has no limit.
pub fn call_budget(runtime: &RuntimeEnv) -> Option<usize> {
    match runtime.memory_pool.memory_limit() {
        MemoryLimit::Finite(limit) => Some((limit / 4).max(1)),
        MemoryLimit::Infinite | MemoryLimit::Unknown => None,
    }
}

/// `state` with every function listed in the [module docs](self) bounded by [`call_budget`],
/// its constant folding guarded by [`FoldingGuard`], and its nested loop joins kept in memory
/// ([`crate::join_memory`]), and the DataFusion bugs of [`crate::workarounds`] worked around;
/// only the latter when its memory pool has no limit. Applying it twice changes nothing more.
pub fn bound_functions(state: SessionState) -> SessionState {
    // DataFusion bugs worked around for every session, limited or not.
    let state = crate::workarounds::apply(state);
    let Some(budget) = call_budget(state.runtime_env()) else {
        return state;
    };
    let functions: Vec<Arc<ScalarUDF>> = state.scalar_functions().values().cloned().collect();
    let rules = guarded_optimizers(&state);
    let builder = SessionStateBuilder::new_from_existing(state).with_optimizer_rules(rules);
    let mut state = with_bounding_rules(builder, budget).build();
    for udf in functions {
        if let Some(bounded) = BoundedFunction::wrap(&udf, budget) {
            // Registering under the same name and aliases replaces the unbounded function.
            let _ = state.register_udf(Arc::new(bounded));
        }
    }
    state
}

use crate::workarounds::SIMPLIFY;

/// `state`'s optimizer rules with each constant-folding rule wrapped in a [`FoldingGuard`]
/// (once).
fn guarded_optimizers(state: &SessionState) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    state
        .optimizers()
        .iter()
        .map(|rule| {
            if rule.name() == SIMPLIFY && !is_guard(rule.as_ref()) {
                Arc::new(FoldingGuard::new(Arc::clone(rule)))
                    as Arc<dyn OptimizerRule + Send + Sync>
            } else {
                Arc::clone(rule)
            }
        })
        .collect()
}

/// `builder` with the analyzer rule `BoundCalls` and the physical rule [`InMemoryJoins`],
/// each added unless it is there already.
fn with_bounding_rules(mut builder: SessionStateBuilder, budget: usize) -> SessionStateBuilder {
    let has_rule = builder
        .analyzer_rules()
        .as_ref()
        .is_some_and(|rules| rules.iter().any(|r| r.name() == BoundCalls::NAME));
    if !has_rule {
        builder = builder.with_analyzer_rule(Arc::new(BoundCalls::new(budget)));
    }
    let has_rule = builder
        .physical_optimizer_rules()
        .as_ref()
        .is_some_and(|rules| rules.iter().any(|r| r.name() == InMemoryJoins::NAME));
    if !has_rule {
        // Last: after every rule that may still replace or move a join.
        builder = builder.with_physical_optimizer_rule(Arc::new(InMemoryJoins));
    }
    builder
}

#[cfg(test)]
mod tests;
