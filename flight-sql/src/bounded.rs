//! Scalar functions whose output size the caller controls, bounded by the session's memory limit.
//!
//! DataFusion's memory pool accounts the buffers of operators (sorts, joins, aggregates), not
//! the arrays a scalar function returns: `repeat('x', 1500000000)` allocates 1.5 GB whatever
//! the limit. [`bound_functions`] replaces, in a [`SessionState`], each function whose output
//! can be much larger than its inputs with a [`BoundedFunction`]: the same function (name,
//! aliases, signature, return type, simplification, documentation are delegated), except that
//! each call first computes from its argument values an upper bound of the bytes it returns for
//! the whole batch, and refuses with [`DataFusionError::ResourcesExhausted`] (gRPC
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
//! binary expression, not a function: [`BoundCalls`] replaces it by [`StringConcat`], the same
//! kernel as a function with the same column name (`a || b`), bounded like `concat`. A
//! coordinator sends it to peers as `||` again (see `polder_federation`'s peer dialect).

use std::cell::Cell;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_dyn;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
    Volatility,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// How one bounded function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Growth {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n [, fill])`, `rpad`: `len(s) + n` characters of `fill` (4 bytes each unless
    /// `fill` is ASCII).
    Pad,
    /// `replace(s, from, to)`: one `to` per `from` in `s` (per character if `from` is empty).
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: one replacement per match, at
    /// most one match per byte; each group reference copies at most `s` once over all matches.
    RegexpReplace,
    /// `array_to_string(array, delimiter [, null])`: the elements and one delimiter (or null
    /// string) each.
    ArrayToString,
    /// The sum of the arguments, times a factor.
    Sum(u8),
    /// `concat_ws(separator, value...)`: the values and a separator between each two.
    ConcatWs,
    /// `array_repeat(element, n)`: `size(element) * n`.
    ArrayRepeat,
    /// `array_resize(array, n [, value])`: `n` elements of the larger of the array's and value's.
    ArrayResize,
    /// `range(start, stop, step)` (`inclusive = false`), `generate_series` (`true`).
    Range,
}

impl Growth {
    /// The growth of DataFusion's default function `name`, if it is one this module bounds.
    pub fn of(name: &str) -> Option<Growth> {
        Some(match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "array_to_string" => Growth::ArrayToString,
            "concat_ws" => Growth::ConcatWs,
            "concat" | "array_concat" | "array_append" | "array_prepend" => Growth::Sum(1),
            "overlay" | "encode" => Growth::Sum(2),
            "array_repeat" => Growth::ArrayRepeat,
            "array_resize" => Growth::ArrayResize,
            "range" | "generate_series" => Growth::Range,
            _ => return None,
        })
    }
}

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
    let rules = state
        .optimizers()
        .iter()
        .map(|rule| {
            if rule.name() == SIMPLIFY && !is_guard(rule.as_ref()) {
                Arc::new(FoldingGuard(Arc::clone(rule))) as Arc<dyn OptimizerRule + Send + Sync>
            } else {
                Arc::clone(rule)
            }
        })
        .collect();
    let functions: Vec<Arc<ScalarUDF>> = state.scalar_functions().values().cloned().collect();
    let mut builder = SessionStateBuilder::new_from_existing(state).with_optimizer_rules(rules);
    let has_rule = builder
        .analyzer_rules()
        .as_ref()
        .is_some_and(|rules| rules.iter().any(|r| r.name() == BoundCalls::NAME));
    if !has_rule {
        builder = builder.with_analyzer_rule(Arc::new(BoundCalls { budget }));
    }
    let has_rule = builder
        .physical_optimizer_rules()
        .as_ref()
        .is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r.name() == crate::join_memory::InMemoryJoins::NAME)
        });
    if !has_rule {
        // Last: after every rule that may still replace or move a join.
        builder = builder.with_physical_optimizer_rule(Arc::new(crate::join_memory::InMemoryJoins));
    }
    let mut state = builder.build();
    for udf in functions {
        if udf.inner().is::<BoundedFunction>() {
            continue;
        }
        if let Some(growth) = Growth::of(udf.name()) {
            let bounded = BoundedFunction::new(Arc::clone(udf.inner()), growth, budget);
            // Registering under the same name and aliases replaces the unbounded function.
            let _ = state.register_udf(Arc::new(ScalarUDF::new_from_impl(bounded)));
        }
    }
    state
}

const SIMPLIFY: &str = "simplify_expressions";

/// Bounds the calls SQL syntax plans without the function registry (`OVERLAY(s PLACING t FROM
/// n)`, `||` on arrays as `array_concat`, `array_append` or `array_prepend`): the last analyzer
/// rule, before any constant is folded.
#[derive(Debug)]
struct BoundCalls {
    budget: usize,
}

impl BoundCalls {
    const NAME: &str = "polder_bound_calls";
}

impl AnalyzerRule for BoundCalls {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        let concat = Arc::new(ScalarUDF::new_from_impl(BoundedFunction::new(
            Arc::new(StringConcat::new()),
            Growth::Sum(1),
            self.budget,
        )));
        let bound = |expr: Expr| {
            expr.transform_up(|expr| match expr {
                // After type coercion, `||` left in the plan joins two strings.
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::StringConcat,
                    right,
                }) => Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func: Arc::clone(&concat),
                    args: vec![*left, *right],
                }))),
                Expr::ScalarFunction(call) if !call.func.inner().is::<BoundedFunction>() => {
                    match Growth::of(call.func.name()) {
                        Some(growth) => {
                            let func = BoundedFunction::new(
                                Arc::clone(call.func.inner()),
                                growth,
                                self.budget,
                            );
                            let func = Arc::new(ScalarUDF::new_from_impl(func));
                            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                                func,
                                args: call.args,
                            })))
                        }
                        None => Ok(Transformed::no(Expr::ScalarFunction(call))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })
        };
        plan.transform_up_with_subqueries(|plan| plan.map_expressions(bound))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }
}

/// The `||` operator on two strings of the same type as a function: the kernel DataFusion's
/// binary expression uses (NULL when either side is NULL), and the binary expression's column
/// name, so that replacing the operator changes no answer and no name.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StringConcat {
    signature: Signature,
}

impl StringConcat {
    /// The name peers' SQL dialects translate back to `||`.
    pub const NAME: &str = "polder_string_concat";

    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for StringConcat {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => Err(DataFusionError::Internal("|| takes two operands".into())),
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [left, right] if left == right => Ok(left.clone()),
            _ => Err(DataFusionError::Internal(format!(
                "|| of {arg_types:?}: its operands are coerced to one string type first"
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("|| takes two operands".into()));
        };
        let rows = args.number_rows;
        let joined = concat_elements_dyn(&left.to_array(rows)?, &right.to_array(rows)?)?;
        Ok(ColumnarValue::Array(joined))
    }
}

fn is_guard(rule: &(dyn OptimizerRule + Send + Sync)) -> bool {
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

/// A scalar function whose calls are refused when their output could exceed a budget of bytes;
/// otherwise the function it wraps, unchanged.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedFunction {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
    budget: usize,
}

impl BoundedFunction {
    /// `inner`, whose output grows as `growth` says, bounded to `budget` bytes per call.
    pub fn new(inner: Arc<dyn ScalarUDFImpl>, growth: Growth, budget: usize) -> Self {
        Self {
            inner: inner.into(),
            growth,
            budget,
        }
    }

    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let bound = output_bound(self.growth, &args.args, args.number_rows);
        if FOLDING.get() {
            // Folding evaluates for one row; the literal may be copied into each row of a batch.
            let batch = usize::from(args.config_options.execution.batch_size).max(1) as u128;
            if bound.saturating_mul(batch) > self.budget as u128 {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{} is not folded into a constant of about {} bytes",
                    self.inner.name(),
                    bound
                )));
            }
        }
        if bound > self.budget as u128 {
            let call = match self.inner.name() {
                StringConcat::NAME => "the || operator".to_string(),
                name => format!("{name}()"),
            };
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{call} would return about {} for {} row(s), more than the {} one function call may \
                 use (a quarter of the node's memory limit, memory_limit_mib)",
                human(bound),
                args.number_rows,
                human(self.budget as u128),
            )));
        }
        Ok(())
    }
}

fn human(bytes: u128) -> String {
    const MIB: u128 = 1024 * 1024;
    if bytes >= MIB {
        format!("{} MiB", bytes.div_ceil(MIB))
    } else {
        format!("{bytes} bytes")
    }
}

#[warn(clippy::missing_trait_methods)] // delegates every method but one
impl ScalarUDFImpl for BoundedFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[allow(deprecated)]
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    #[allow(deprecated)]
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(BoundedFunction::new(
            Arc::clone(updated.inner()),
            self.growth,
            self.budget,
        )))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}

/// An upper bound of the bytes `growth`'s function returns for `rows` rows of `args`. A
/// scalar argument stands for every row; bounds saturate rather than overflow.
fn output_bound(growth: Growth, args: &[ColumnarValue], rows: usize) -> u128 {
    let all_scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let (distinct, copies) = if all_scalar {
        (1, rows.max(1))
    } else {
        (rows, 1)
    };
    let args: Vec<Arg> = args.iter().map(Arg::new).collect();
    let mut total: u128 = 0;
    for row in 0..distinct {
        total = total.saturating_add(row_bound(growth, &args, row));
    }
    // Offsets and validity: 8 bytes per row is more than either takes.
    total
        .saturating_mul(copies as u128)
        .saturating_add(rows as u128 * 8)
}

fn row_bound(growth: Growth, args: &[Arg], row: usize) -> u128 {
    let bytes = |i: usize| args.get(i).map_or(0, |a| a.bytes(row));
    let int = |i: usize| args.get(i).and_then(|a| a.int(row));
    let count = |i: usize| int(i).unwrap_or(0).max(0) as u128;
    match growth {
        Growth::Repeat => bytes(0).saturating_mul(count(1)),
        Growth::Pad => {
            let width = match args.get(2) {
                Some(fill) if !fill.is_ascii(row) => 4,
                _ => 1,
            };
            bytes(0).saturating_add(count(1).saturating_mul(width))
        }
        Growth::Replace => {
            let s = bytes(0);
            let matches = s / bytes(1).max(1) + 1;
            s.saturating_add(matches.saturating_mul(bytes(2)))
        }
        Growth::RegexpReplace => {
            let s = bytes(0);
            let replacement = args.get(2).map_or(0, |a| a.bytes(row));
            let references = args.get(2).map_or(0, |a| a.references(row));
            s.saturating_add((s + 1).saturating_mul(replacement))
                .saturating_add(s.saturating_mul(references))
        }
        Growth::ArrayToString => {
            let elements = args.first().map_or(0, |a| a.elements(row));
            let per_element = bytes(1).max(bytes(2));
            bytes(0).saturating_add(elements.saturating_mul(per_element.saturating_add(20)))
        }
        Growth::Sum(factor) => (0..args.len())
            .map(bytes)
            .fold(0u128, u128::saturating_add)
            .saturating_mul(factor as u128),
        Growth::ConcatWs => (1..args.len())
            .map(bytes)
            .fold(0u128, u128::saturating_add)
            .saturating_add(bytes(0).saturating_mul(args.len().saturating_sub(2) as u128)),
        Growth::ArrayRepeat => bytes(0).max(1).saturating_mul(count(1)),
        Growth::ArrayResize => {
            let element = args
                .first()
                .map_or(8, |a| a.element_width(row))
                .max(bytes(2));
            bytes(0).saturating_add(count(1).saturating_mul(element.max(1)))
        }
        Growth::Range => range_elements(args, row).saturating_mul(8),
    }
}

/// How many elements `range`/`generate_series` returns for one row (one more than the exact
/// count of `range`, which is as good a bound).
fn range_elements(args: &[Arg], row: usize) -> u128 {
    let (start, stop, step) = match args {
        [stop] => (Some(0), stop.instant(row), None),
        [start, stop] => (start.instant(row), stop.instant(row), None),
        [start, stop, step, ..] => (start.instant(row), stop.instant(row), Some(step)),
        [] => return 0,
    };
    let (Some(start), Some(stop)) = (start, stop) else {
        return 0;
    };
    let span = (stop as i128 - start as i128).unsigned_abs();
    // Integer ranges count in ones; temporal ones in microseconds.
    let step = match step {
        None => 1,
        Some(step) => match step.step_micros(row) {
            Some(s) if s != 0 => s.unsigned_abs() as u128,
            _ => return 0, // a zero or null step is refused or null, not expanded
        },
    };
    span / step.max(1) + 1
}

/// One argument of a call, with what the bounds need to know about each row.
struct Arg<'a> {
    value: &'a ColumnarValue,
    /// The argument as 64-bit integers, if it is one (integers, or temporal values as
    /// microseconds since the epoch).
    ints: Option<ArrayRef>,
}

impl<'a> Arg<'a> {
    fn new(value: &'a ColumnarValue) -> Self {
        let ints = match value.data_type() {
            t if t.is_integer() => Some(DataType::Int64),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            _ => None,
        }
        .and_then(|target| {
            let array = value.to_array(1).ok()?;
            cast(&cast(&array, &target).ok()?, &DataType::Int64).ok()
        });
        Self { value, ints }
    }

    fn index(&self, row: usize) -> usize {
        match self.value {
            ColumnarValue::Array(_) => row,
            ColumnarValue::Scalar(_) => 0,
        }
    }

    fn int(&self, row: usize) -> Option<i64> {
        let ints = self.ints.as_ref()?.as_primitive::<Int64Type>();
        let i = self.index(row);
        (i < ints.len() && ints.is_valid(i)).then(|| ints.value(i))
    }

    fn instant(&self, row: usize) -> Option<i64> {
        self.int(row)
    }

    /// A step of `range`: an integer, or an interval in microseconds (a month counted as 28
    /// days, the shortest).
    fn step_micros(&self, row: usize) -> Option<i64> {
        if let Some(i) = self.int(row) {
            return Some(i);
        }
        let scalar = self.scalar(row)?;
        const DAY: i64 = 86_400_000_000;
        match scalar {
            ScalarValue::IntervalMonthDayNano(Some(v)) => Some(
                (v.months as i64 * 28 * DAY)
                    .saturating_add(v.days as i64 * DAY)
                    .saturating_add(v.nanoseconds / 1000)
                    .max(if v.nanoseconds != 0 { 1 } else { 0 }),
            ),
            ScalarValue::IntervalDayTime(Some(v)) => {
                Some(v.days as i64 * DAY + v.milliseconds as i64 * 1000)
            }
            ScalarValue::IntervalYearMonth(Some(m)) => Some(m as i64 * 28 * DAY),
            _ => None,
        }
    }

    fn scalar(&self, row: usize) -> Option<ScalarValue> {
        match self.value {
            ColumnarValue::Scalar(s) => Some(s.clone()),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row).ok(),
        }
    }

    /// Bytes of the row's value: its characters or bytes for strings and binary values, its
    /// data for anything else.
    fn bytes(&self, row: usize) -> u128 {
        match self.value {
            ColumnarValue::Scalar(s) => scalar_bytes(s),
            ColumnarValue::Array(a) => array_row_bytes(a.as_ref(), row),
        }
    }

    fn is_ascii(&self, row: usize) -> bool {
        match self.value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => s.is_ascii(),
            ColumnarValue::Scalar(_) => true,
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value(row).is_ascii(),
                DataType::LargeUtf8 => a.as_string::<i64>().value(row).is_ascii(),
                DataType::Utf8View => a.as_string_view().value(row).is_ascii(),
                _ => false,
            },
        }
    }

    /// `$` and `\` in a replacement: each may reference a group.
    fn references(&self, row: usize) -> u128 {
        let count = |s: &str| s.bytes().filter(|b| *b == b'$' || *b == b'\\').count() as u128;
        match self.value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => count(s),
            ColumnarValue::Scalar(_) => 0,
            ColumnarValue::Array(a) if a.is_null(row) => 0,
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::Utf8 => count(a.as_string::<i32>().value(row)),
                DataType::LargeUtf8 => count(a.as_string::<i64>().value(row)),
                DataType::Utf8View => count(a.as_string_view().value(row)),
                _ => 0,
            },
        }
    }

    /// Elements of the row's list, counted through nested lists.
    fn elements(&self, row: usize) -> u128 {
        let list = match self.value {
            ColumnarValue::Scalar(s) => s.to_array().ok(),
            ColumnarValue::Array(a) => Some(a.slice(row, 1)),
        };
        list.map_or(0, |l| leaf_elements(l.as_ref()))
    }

    /// Bytes of one element of the row's list (its data divided by its elements).
    fn element_width(&self, row: usize) -> u128 {
        let elements = self.elements(row).max(1);
        self.bytes(row).div_ceil(elements).max(8)
    }
}

fn leaf_elements(array: &dyn Array) -> u128 {
    let values = match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            let (from, to) = (l.value_offsets()[0], l.value_offsets()[l.len()]);
            l.values().slice(from as usize, (to - from) as usize)
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            let (from, to) = (l.value_offsets()[0], l.value_offsets()[l.len()]);
            l.values().slice(from as usize, (to - from) as usize)
        }
        DataType::FixedSizeList(_, _) => {
            let l = array.as_fixed_size_list();
            let n = l.value_length() as usize;
            l.values().slice(l.offset() * n, l.len() * n)
        }
        _ => return array.len() as u128,
    };
    leaf_elements(values.as_ref()).max(values.len() as u128)
}

fn scalar_bytes(value: &ScalarValue) -> u128 {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.len() as u128,
        ScalarValue::Binary(Some(b))
        | ScalarValue::LargeBinary(Some(b))
        | ScalarValue::BinaryView(Some(b))
        | ScalarValue::FixedSizeBinary(_, Some(b)) => b.len() as u128,
        ScalarValue::List(a) => slice_bytes(a.as_ref()),
        ScalarValue::LargeList(a) => slice_bytes(a.as_ref()),
        ScalarValue::FixedSizeList(a) => slice_bytes(a.as_ref()),
        v if v.is_null() => 0,
        v => v
            .data_type()
            .primitive_width()
            .map_or_else(|| v.size() as u128, |w| w as u128),
    }
}

fn array_row_bytes(array: &dyn Array, row: usize) -> u128 {
    if array.is_null(row) {
        return 0;
    }
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).len() as u128,
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).len() as u128,
        DataType::Utf8View => array.as_string_view().value(row).len() as u128,
        DataType::Binary => array.as_binary::<i32>().value(row).len() as u128,
        DataType::LargeBinary => array.as_binary::<i64>().value(row).len() as u128,
        DataType::BinaryView => array.as_binary_view().value(row).len() as u128,
        t => match t.primitive_width() {
            Some(w) => w as u128,
            None => slice_bytes(array.slice(row, 1).as_ref()),
        },
    }
}

/// The bytes of an array's own part of its buffers (not the whole buffers of a slice).
fn slice_bytes(array: &dyn Array) -> u128 {
    array
        .to_data()
        .get_slice_memory_size()
        .unwrap_or_else(|_| array.get_array_memory_size()) as u128
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionContext;

    const LIMIT: usize = 8 * 1024 * 1024;

    fn state(limit: usize) -> SessionState {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limit, 1.0)
            .build_arc()
            .unwrap();
        SessionStateBuilder::new()
            .with_config(crate::session_config())
            .with_runtime_env(runtime)
            .with_default_features()
            .build()
    }

    fn bounded() -> SessionContext {
        SessionContext::new_with_state(bound_functions(state(LIMIT)))
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<String, Error> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?.to_string())
    }

    #[tokio::test]
    async fn large_outputs_are_refused_naming_the_function() {
        let ctx = bounded();
        let cases = [
            ("repeat", "SELECT length(repeat('x', 1500000000))"),
            ("lpad", "SELECT lpad('x', 1500000000)"),
            ("rpad", "SELECT rpad('x', 1500000000, 'é')"),
            (
                "replace",
                "SELECT replace(repeat('x', 100000), 'x', repeat('y', 1000))",
            ),
            (
                "regexp_replace",
                "SELECT regexp_replace(repeat('x', 100000), 'x', repeat('y', 1000), 'g')",
            ),
            (
                "concat",
                "SELECT concat(repeat('x', 1500000), repeat('y', 1500000))",
            ),
            (
                "concat_ws",
                "SELECT concat_ws(repeat('x', 1100000), 'a', 'b', 'c')",
            ),
            (
                "overlay",
                "SELECT overlay(repeat('x', 1500000) PLACING 'y' FROM 1 FOR 1)",
            ),
            ("overlay", "SELECT overlay(repeat('x', 1500000), 'y', 1, 1)"),
            ("encode", "SELECT encode(repeat('x', 1500000), 'hex')"),
            ("range", "SELECT cardinality(range(1, 300000000))"),
            (
                "generate_series",
                "SELECT cardinality(generate_series(1, 300000000))",
            ),
            (
                "range",
                "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2001-01-01', \
                 INTERVAL '1 second'))",
            ),
            (
                "array_repeat",
                "SELECT cardinality(array_repeat(1, 300000000))",
            ),
            (
                "array_repeat",
                "SELECT cardinality(array_repeat(repeat('x', 1000), 3000))",
            ),
            (
                "array_resize",
                "SELECT cardinality(array_resize([1], 300000000, 0))",
            ),
            (
                "array_to_string",
                "SELECT length(array_to_string(range(1, 100000), repeat('-', 100)))",
            ),
            (
                "array_concat",
                "SELECT cardinality(array_concat(range(1, 200000), range(1, 200000)))",
            ),
            (
                "array_concat",
                "SELECT cardinality(range(1, 200000) || range(1, 200000))",
            ),
            // Each row is small; the batch is not.
            (
                "repeat",
                "SELECT repeat('x', 100000) FROM generate_series(1, 100)",
            ),
            (
                "repeat",
                "SELECT length(repeat(CAST(value AS VARCHAR), 100000)) FROM generate_series(1, 100)",
            ),
            // Each step of a chain is checked on its own inputs.
            ("repeat", "SELECT length(repeat(repeat('x', 40000), 40000))"),
            // `||` on strings doubles like concat: a chain of doublings stops at the budget.
            (
                "the || operator",
                "WITH a AS (SELECT repeat('x', 1000000) AS s), b AS (SELECT s || s AS s FROM a), \
                 c AS (SELECT s || s AS s FROM b) SELECT length(s || s) FROM c",
            ),
            (
                "the || operator",
                "SELECT length(v || v) FROM (SELECT repeat(CAST(value AS VARCHAR), 300) AS v \
                 FROM generate_series(1000, 2000)) t",
            ),
        ];
        for (name, sql) in cases {
            match run(&ctx, sql).await {
                Err(Error::ResourceExhausted(m)) => {
                    let named = if name.contains("||") {
                        name.to_string()
                    } else {
                        format!("{name}()")
                    };
                    assert!(m.contains(&named), "{sql}: {m}");
                    assert!(m.contains("memory limit"), "{sql}: {m}");
                }
                Err(other) => panic!("{sql}: {other}"),
                Ok(answer) => panic!("{sql} answered {} bytes", answer.len()),
            }
        }
    }

    #[tokio::test]
    async fn small_calls_answer_as_the_unbounded_functions() {
        let plain = SessionContext::new_with_state(state(LIMIT));
        let ctx = bounded();
        let sql = "SELECT repeat('ab', 3), lpad('x', 5, 'yz'), rpad('é', 4, 'ü'), \
            replace('abcabc', 'b', 'XY'), regexp_replace('aaa', 'a', '${0}b', 'g'), \
            concat('a', NULL, 'b'), concat_ws('-', 'a', NULL, 'b'), \
            overlay('Txxxxas' PLACING 'hom' FROM 2 FOR 4), encode('ab', 'hex'), \
            array_repeat(1, 3), range(1, 5), generate_series(1, 3), range(DATE '2020-01-01', \
            DATE '2020-03-01', INTERVAL '1 month'), array_resize([1, 2], 4, 0), \
            array_to_string([1, 2, 3], ','), array_concat([1], [2, 3])";
        let expected = run(&plain, sql).await.unwrap();
        assert_eq!(run(&ctx, sql).await.unwrap(), expected);
        let per_row = "SELECT value, repeat('x', CAST(value AS INT)), lpad(CAST(value AS VARCHAR), \
            CAST(value AS INT), '0'), array_repeat(value, 2), range(value), \
            concat(CAST(value AS VARCHAR), 'x') FROM generate_series(0, 4) ORDER BY value";
        let expected = run(&plain, per_row).await.unwrap();
        assert_eq!(run(&ctx, per_row).await.unwrap(), expected);
        // `||` answers as the operator does: NULL when either side is, the same column names.
        let operator = "SELECT 'a' || 'b' AS c, NULL || 'x', v || '-' || v, v || NULL \
            FROM (VALUES ('p'), (NULL), ('q')) t(v)";
        let expected = run(&plain, operator).await.unwrap();
        assert_eq!(run(&ctx, operator).await.unwrap(), expected);
        let columns = "SELECT v || w, v || 'x' || w FROM (VALUES ('a', 'b')) t(v, w)";
        let names = |ctx: &SessionContext| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.sql(columns).await.unwrap();
                df.schema().field_names()
            }
        };
        assert_eq!(names(&ctx).await, names(&plain).await);
        // Within the budget, a many-row batch answers too (2 MiB under 8 MiB).
        let rows = "SELECT sum(length(repeat('x', 1000))) FROM generate_series(1, 1000)";
        assert!(run(&ctx, rows).await.unwrap().contains("1000000"));
    }

    #[tokio::test]
    async fn small_constants_fold_and_large_ones_stay_calls() {
        let ctx = bounded();
        let plan = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.sql(sql).await.unwrap();
                format!("{}", df.into_optimized_plan().unwrap().display_indent())
            }
        };
        assert!(plan("SELECT repeat('ab', 3) AS s").await.contains("ababab"));
        let large = plan("SELECT repeat('x', 100000) AS s").await;
        assert!(
            large.contains("repeat(Utf8(\"x\"), Int64(100000))"),
            "{large}"
        );
        // One row of 100 kB answers: only the folding was held back.
        let answer = run(&ctx, "SELECT length(repeat('x', 100000)) AS n")
            .await
            .unwrap();
        assert!(answer.contains("100000"), "{answer}");
    }

    #[test]
    fn names_aliases_and_signatures_are_kept() {
        let before = state(LIMIT);
        let after = bound_functions(state(LIMIT));
        for name in [
            "repeat",
            "lpad",
            "array_repeat",
            "list_repeat",
            "range",
            "generate_series",
        ] {
            let (b, a) = (before.udf(name).unwrap(), after.udf(name).unwrap());
            assert!(a.inner().is::<BoundedFunction>(), "{name}");
            assert_eq!((a.name(), a.aliases()), (b.name(), b.aliases()));
            assert_eq!(a.signature(), b.signature());
        }
        assert!(!after.udf("upper").unwrap().inner().is::<BoundedFunction>());
        // Twice is once; no limit, no bounds.
        let twice = bound_functions(after);
        let repeat = twice.udf("repeat").unwrap();
        let bounded = repeat.inner().downcast_ref::<BoundedFunction>().unwrap();
        assert!(!bounded.inner.is::<BoundedFunction>());
        let guards = twice
            .optimizers()
            .iter()
            .filter(|r| is_guard(r.as_ref()))
            .count();
        assert_eq!(
            guards,
            before
                .optimizers()
                .iter()
                .filter(|r| r.name() == SIMPLIFY)
                .count()
        );
        let unlimited = SessionStateBuilder::new().with_default_features().build();
        let unlimited = bound_functions(unlimited);
        assert!(
            !unlimited
                .udf("repeat")
                .unwrap()
                .inner()
                .is::<BoundedFunction>()
        );
    }
}
