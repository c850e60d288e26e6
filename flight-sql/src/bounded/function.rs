//! [`BoundedFunction`]: a scalar function refused when its output could exceed a budget.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ExprSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};

use super::folding::folding;
use super::growth::output_bound;
use super::{Growth, StringConcat};

/// A scalar function whose calls are refused when their output could exceed a budget of bytes;
/// otherwise the function it wraps, unchanged.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedFunction {
    pub(super) inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
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

    /// `udf` bounded to `budget` bytes per call, if its output grows as [`Growth::of`] says
    /// and it is not bounded already.
    pub fn wrap(udf: &ScalarUDF, budget: usize) -> Option<ScalarUDF> {
        if udf.inner().is::<BoundedFunction>() {
            return None;
        }
        let growth = Growth::of(udf.name())?;
        let bounded = BoundedFunction::new(Arc::clone(udf.inner()), growth, budget);
        Some(ScalarUDF::new_from_impl(bounded))
    }

    /// Refuses a call whose output could exceed the budget, or, while constants are folded,
    /// whose result copied into every row of a batch could.
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        let bound = output_bound(self.growth, &args.args, args.number_rows);
        if folding() {
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

/// `bytes` for people: whole MiB from one MiB up.
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
