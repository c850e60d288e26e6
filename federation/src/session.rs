//! A DataFusion session that federates: peers are catalogs, and the planner sends every part of
//! a plan that reads from one peer only to that peer.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{
    Expr, Extension, JoinType, LogicalPlan, LogicalPlanBuilder, SubqueryAlias,
};
use datafusion::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_federation::{FederatedPlanNode, FederatedQueryPlanner, FederationOptimizerRule};

use crate::catalog::PeerCatalog;
use crate::config::{FederationOptions, PeerConfig};
use crate::error::PeerError;

/// Session state with the federation optimizer rules and the planner that turns federated
/// parts into remote queries.
///
/// Federation runs twice:
///
/// 1. Early, where datafusion-federation puts it (right after subqueries become joins): every
///    subtree that reads one peer only, joins and aggregates included, becomes one remote
///    query. The plan is still close to the SQL the analyst wrote, which is the shape the
///    unparser renders faithfully. Parts that are a bare scan, or a cross join of bare scans
///    (a `FROM a, b` list), are left alone here.
/// 2. Last, after DataFusion's own rules: the scans left over (those under joins across peers)
///    now carry their filters, the columns the query uses and their limits, and each becomes a
///    remote query with all of that. Filters and column picks DataFusion pushed down to the
///    edge of a part federated early move into it.
///
/// Federating everything last instead gives wrong SQL for some decorrelated subqueries (TPC-H
/// Q22 loses its filters); federating everything early asks peers for every row and column
/// of a table joined across peers. The TPC-H suite over three nodes checks the combination.
pub fn federated_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionState {
    let mut rules = Optimizer::new().rules;
    let early = rules
        .iter()
        .position(|rule| rule.name() == "scalar_subquery_to_join")
        .map_or(0, |i| i + 1);
    rules.insert(early, Arc::new(FederateSubtrees::default()));
    // Aggregates over a union of nodes split into a partial aggregate per node first, so that
    // the federation sends each partial to its node.
    rules.insert(early, Arc::new(crate::partial::PartialAggregates));
    rules.insert(0, Arc::new(CollapseAliases));
    // Inline rows are a local source, so that no part with them is sent to a peer.
    rules.insert(0, Arc::new(crate::values::LocalValues));
    rules.push(Arc::new(FederateRemaining::default()));
    SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(FederatedQueryPlanner::new()))
        .with_default_features()
        .build()
}

/// `SubqueryAlias(a, SubqueryAlias(b, x))` becomes `SubqueryAlias(a, x)`: the outer alias hides
/// the inner one, so the plan means the same. A view used under an alias of its own (`FROM
/// nation n1` where `nation` is a view) has such a pair; left in, filters pushed through both
/// aliases end up qualified with the inner one, which the SQL unparsed for a peer no longer
/// names (`FROM nation AS n1 WHERE nation.n_name = ...`).
#[derive(Debug)]
struct CollapseAliases;

impl OptimizerRule for CollapseAliases {
    fn name(&self) -> &str {
        "collapse_nested_aliases"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| {
            if let LogicalPlan::SubqueryAlias(outer) = &node
                && let LogicalPlan::SubqueryAlias(inner) = outer.input.as_ref()
            {
                let collapsed =
                    SubqueryAlias::try_new(Arc::clone(&inner.input), outer.alias.clone())?;
                return Ok(Transformed::yes(LogicalPlan::SubqueryAlias(collapsed)));
            }
            Ok(Transformed::no(node))
        })
    }
}

/// datafusion-federation's rule, minus the parts that are a bare scan: those are federated by
/// the rule's second run at the end, with their filters and projections pushed down.
#[derive(Debug, Default)]
struct FederateSubtrees {
    inner: FederationOptimizerRule,
}

impl OptimizerRule for FederateSubtrees {
    fn name(&self) -> &str {
        "federate_single_peer_subtrees"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        federate(&self.inner, plan, config, |node| {
            if let LogicalPlan::Extension(extension) = &node
                && let Some(part) = extension.node.as_any().downcast_ref::<FederatedPlanNode>()
                && is_bare_scan(part.plan())
            {
                return Ok(Transformed::yes(part.plan().clone()));
            }
            Ok(Transformed::no(node))
        })
    }
}

/// datafusion-federation's rule for the scans left over. The rule federates the inputs of plan
/// nodes, so a query that is one bare scan (`SELECT * FROM peer.public.t`, optimized down to
/// the scan alone) first gets a projection of all its columns to federate.
#[derive(Debug, Default)]
struct FederateRemaining {
    inner: FederationOptimizerRule,
}

impl OptimizerRule for FederateRemaining {
    fn name(&self) -> &str {
        "federate_remaining_scans"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let plan = if matches!(plan, LogicalPlan::TableScan(_)) {
            let columns: Vec<Expr> = plan
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            LogicalPlanBuilder::from(plan).project(columns)?.build()?
        } else {
            plan
        };
        federate(&self.inner, plan, config, absorb_into_part)
    }
}

/// datafusion-federation's `rule` on `plan` (empty relations made local first), then
/// `adjust` on every node of the result, bottom up, then each part prepared for its peer
/// ([`prepare_part`]).
fn federate(
    rule: &FederationOptimizerRule,
    plan: LogicalPlan,
    config: &dyn OptimizerConfig,
    adjust: impl FnMut(LogicalPlan) -> Result<Transformed<LogicalPlan>>,
) -> Result<Transformed<LogicalPlan>> {
    crate::values::local_empty_relations(plan)?
        .transform_data(|plan| rule.rewrite(plan, config))?
        .transform_data(|plan| plan.transform_up(adjust))?
        .transform_data(|plan| plan.transform_up(prepare_part))
}

/// Moves what DataFusion pushed down to the edge of a part federated early (a join on one peer
/// whose filter was in the WHERE clause of a query across peers) into that part, so that it
/// runs on the peer: filters without subqueries (a subquery may read other peers), and
/// projections that only pick columns (the columns the query uses).
fn absorb_into_part(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let (input, absorbable) = match &node {
        LogicalPlan::Filter(filter) => (
            &filter.input,
            !filter.predicate.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                        | Expr::OuterReferenceColumn(..)
                ))
            })?,
        ),
        LogicalPlan::Projection(projection) => (
            &projection.input,
            projection.expr.iter().all(|e| matches!(e, Expr::Column(_))),
        ),
        _ => return Ok(Transformed::no(node)),
    };
    let LogicalPlan::Extension(extension) = input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    let Some(part) = extension.node.as_any().downcast_ref::<FederatedPlanNode>() else {
        return Ok(Transformed::no(node));
    };
    if !absorbable {
        return Ok(Transformed::no(node));
    }
    let inner = node.with_new_exprs(node.expressions(), vec![part.plan().clone()])?;
    let absorbed = FederatedPlanNode::new(inner, Arc::clone(&part.planner));
    Ok(Transformed::yes(LogicalPlan::Extension(Extension {
        node: Arc::new(absorbed),
    })))
}

/// A part as it is sent to a peer: rewritten so that the SQL unparsed from it means what it
/// means (`crate::faithful`), DECIMAL constants typed included. A part is a leaf to the
/// optimizer, so no later rule undoes the rewrite. A part that reads no table (the optimizer
/// reduced it to an empty relation) is not sent at all: it runs here.
fn prepare_part(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Extension(extension) = &node else {
        return Ok(Transformed::no(node));
    };
    let Some(part) = extension.node.as_any().downcast_ref::<FederatedPlanNode>() else {
        return Ok(Transformed::no(node));
    };
    if !crate::faithful::reads_a_table(part.plan()) {
        return Ok(Transformed::yes(part.plan().clone()));
    }
    let prepared = crate::faithful::part_for_peer(part.plan().clone())?;
    if !prepared.transformed {
        return Ok(Transformed::no(node));
    }
    let part = FederatedPlanNode::new(prepared.data, Arc::clone(&part.planner));
    Ok(Transformed::yes(LogicalPlan::Extension(Extension {
        node: Arc::new(part),
    })))
}

/// A scan, perhaps aliased, perhaps under the projection of plain columns the federation rule
/// puts on top of what it cuts out, or a cross join of such scans (a `FROM a, b` list whose
/// join conditions are still in the WHERE clause above: federated now, the peer would be asked
/// for the whole cross product).
fn is_bare_scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Join(join) => {
            join.on.is_empty()
                && join.filter.is_none()
                && join.join_type == JoinType::Inner
                && is_bare_scan(&join.left)
                && is_bare_scan(&join.right)
        }
        LogicalPlan::SubqueryAlias(alias) => is_bare_scan(&alias.input),
        LogicalPlan::Projection(projection) => {
            projection.expr.iter().all(|e| matches!(e, Expr::Column(_)))
                && is_bare_scan(&projection.input)
        }
        _ => false,
    }
}

/// Session state for `options`: federated when pushdown is on, plain otherwise (remote tables
/// are then scanned whole).
pub fn session_state(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    options: &FederationOptions,
) -> SessionState {
    if options.pushdown {
        let mut config = config;
        // The build side's keys of a join become the runtime filter sent with the other side's
        // remote query: worth more keys than DataFusion's default for local scans.
        config
            .options_mut()
            .optimizer
            .hash_join_inlist_pushdown_max_distinct_values = options.runtime_filter_keys;
        federated_state(config, runtime)
    } else {
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build()
    }
}

/// The peers registered in one session, and what went wrong finding them.
#[derive(Debug, Default)]
pub struct FederatedSession {
    /// Each peer's catalog, in the order given.
    pub catalogs: Vec<Arc<PeerCatalog>>,
    /// Peers whose first discovery failed; they keep being retried in the background.
    /// (Always empty after [`FederatedSession::register_in_background`].)
    pub unavailable: Vec<PeerError>,
}

impl FederatedSession {
    /// Registers every peer as a catalog of `ctx`, named after it, once each peer's first
    /// discovery has answered or failed (each bounded by the peer timeout): for a client that
    /// queries at once (`polder sql`). A name taken by a catalog of the session already (the
    /// node's own) is a configuration error.
    pub async fn register(
        ctx: &SessionContext,
        peers: &[PeerConfig],
        options: &FederationOptions,
    ) -> Result<Self, PeerError> {
        check_names(ctx, peers)?;
        let mut session = Self::default();
        let attempts = futures::future::join_all(
            peers
                .iter()
                .map(|peer| PeerCatalog::connect(peer.clone(), options.clone())),
        )
        .await;
        for (peer, attempt) in peers.iter().zip(attempts) {
            let (catalog, first_error) = attempt?;
            ctx.register_catalog(&peer.name, Arc::clone(&catalog) as Arc<_>);
            session.catalogs.push(catalog);
            session.unavailable.extend(first_error);
        }
        Ok(session)
    }

    /// Registers every peer as a catalog of `ctx` at once, without waiting for any peer: each
    /// is discovered in the background (retried every few seconds until it answers), and its
    /// tables appear when it is. Until then, queries naming the peer fail with an `Unavailable`
    /// error naming it. For a node, whose start must not wait on other nodes.
    pub fn register_in_background(
        ctx: &SessionContext,
        peers: &[PeerConfig],
        options: &FederationOptions,
    ) -> Result<Self, PeerError> {
        check_names(ctx, peers)?;
        let mut session = Self::default();
        for peer in peers {
            let catalog = PeerCatalog::connect_in_background(peer.clone(), options.clone())?;
            ctx.register_catalog(&peer.name, Arc::clone(&catalog) as Arc<_>);
            session.catalogs.push(catalog);
        }
        Ok(session)
    }

    /// Each peer's name, and whether its tables have been discovered.
    pub fn discovered(&self) -> Vec<(String, bool)> {
        self.catalogs
            .iter()
            .map(|c| (c.peer().name().to_string(), c.is_discovered()))
            .collect()
    }
}

/// A peer may not take the name of a catalog the session has already (the node's own).
fn check_names(ctx: &SessionContext, peers: &[PeerConfig]) -> Result<(), PeerError> {
    match peers.iter().find(|peer| ctx.catalog(&peer.name).is_some()) {
        Some(peer) => Err(PeerError::Config {
            peer: peer.name.clone(),
            detail: "the name is already a catalog of this session".into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::builder::LogicalTableSource;
    use datafusion::optimizer::OptimizerContext;

    use super::*;

    #[test]
    fn the_outer_of_two_aliases_stays() {
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, false)]);
        let source = Arc::new(LogicalTableSource::new(Arc::new(schema)));
        let plan = LogicalPlanBuilder::scan("nation", source, None)
            .and_then(|b| b.alias("nation"))
            .and_then(|b| b.alias("n1"))
            .and_then(|b| b.build())
            .unwrap();
        let collapsed = CollapseAliases
            .rewrite(plan, &OptimizerContext::new())
            .unwrap();
        assert!(collapsed.transformed);
        assert_eq!(
            collapsed.data.display_indent().to_string(),
            "SubqueryAlias: n1\n  TableScan: nation"
        );
    }
}
