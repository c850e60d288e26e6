//! Rewriting an aggregate so that every value it releases is perturbed.

use super::*;

/// What perturbation adds to an aggregate: the aggregates it needs (cell keys, largest values,
/// counts), and each released value as its perturbed expression, under its original name.
pub(crate) struct Perturbed {
    pub(crate) helpers: Vec<Expr>,
    pub(crate) values: Vec<Expr>,
}

/// The perturbation of every aggregate of `aggregate` (see the [module docs](self)). Each value's
/// cell key is computed over exactly the rows it aggregates (its `FILTER` included) from the
/// unit and every dimension, so all dimensions must reach the aggregation.
pub(crate) fn perturbed(
    aggregate: &Aggregate,
    path: &ProtectedPath,
    perturbation: &PerturbationSpec,
    unit: Expr,
) -> Result<Perturbed> {
    let dataset = &path.dataset;
    let secret = perturbation
        .secret
        .as_ref()
        .ok_or_else(|| DataFusionError::Internal("a perturbation without its key".into()))?;
    let input = aggregate.input.schema();
    let mut identity = vec![unit];
    for dimension in &path.spec.dimensions {
        let name = path
            .base_names
            .iter()
            .find(|(_, base)| *base == dimension)
            .map(|(top, _)| top.clone())
            .ok_or_else(|| {
                refuse(format!(
                    "dataset '{dataset}' is perturbed per cell: a subquery before the aggregation must keep its dimension '{dimension}'"
                ))
            })?;
        let (qualifier, _) = input.qualified_field_with_unqualified_name(&name)?;
        identity.push(Expr::Column(DFColumn::new(qualifier.cloned(), name)));
    }
    let cell_key = Arc::new(CellKey::udaf(secret));
    let base = |column: &DFColumn| {
        path.base_names
            .get(&column.name)
            .cloned()
            .unwrap_or_else(|| column.name.clone())
    };
    let names = aggregate.schema.columns();
    let names = &names[names.len() - aggregate.aggr_expr.len()..];
    let mut helpers = vec![];
    let mut values = vec![];
    for (index, (expr, name)) in aggregate.aggr_expr.iter().zip(names).enumerate() {
        let Expr::AggregateFunction(function) = expr.clone().unalias() else {
            return Err(refuse(format!(
                "dataset '{dataset}' may only be aggregated with the functions {}",
                path.spec.functions.join(", ")
            )));
        };
        let function_name = function.func.name().to_lowercase();
        let statistic = Statistic::of_function(&function_name).ok_or_else(|| {
            refuse(format!(
                "dataset '{dataset}' is perturbed per cell, which only count, sum and avg can be; {function_name} cannot"
            ))
        })?;
        let params = &function.params;
        let helper = |func: Arc<AggregateUDF>, args: Vec<Expr>, distinct: bool, what: &str| {
            Expr::AggregateFunction(AggregateFunction::new_udf(
                func,
                args,
                distinct,
                params.filter.clone(),
                vec![],
                None,
            ))
            .alias(format!("__polder_{what}_{index}"))
        };
        helpers.push(helper(
            Arc::clone(&cell_key),
            identity.clone(),
            false,
            "cell",
        ));
        let mut args = vec![
            Expr::Column(name.clone()),
            col(format!("__polder_cell_{index}")),
        ];
        match statistic {
            Statistic::Count => args.push(lit("count")),
            Statistic::Sum | Statistic::Average => {
                let argument = params.args.first().cloned().unwrap_or_else(|| lit(0));
                let column = stored_column(&argument).map(base).unwrap_or_default();
                let distinct = if params.distinct { " DISTINCT" } else { "" };
                args.push(lit(format!("{function_name}{distinct}({column})")));
                let magnitude = abs(cast_expr(argument.clone(), DataType::Float64));
                helpers.push(helper(max_udaf(), vec![magnitude], false, "largest"));
                helpers.push(helper(count_udaf(), vec![argument], params.distinct, "n"));
                args.push(col(format!("__polder_largest_{index}")));
                args.push(col(format!("__polder_n_{index}")));
            }
        }
        let perturb = Perturb::udf(perturbation, statistic)?;
        values.push(
            perturb
                .call(args)
                .alias_qualified(name.relation.clone(), name.name.clone()),
        );
    }
    Ok(Perturbed { helpers, values })
}
