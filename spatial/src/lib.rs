//! Spatial SQL for Polder nodes: the OGC Simple Features `ST_*` functions analysts reach for,
//! over the nodes' WKB geometry columns (GeoArrow `geoarrow.wkb`, CRS in the field metadata).
//!
//! [`register`] adds to a session every function of `geodatafusion` (constructors such as
//! `ST_Point` and `ST_GeomFromText`, predicates such as `ST_Contains` and `ST_Intersects`,
//! measurements such as `ST_Area` and `ST_Distance`, `ST_AsText`, ...) and the ones it lacks,
//! written here ([`functions`]): `ST_Transform` between the CRSs of [`crs`] (EPSG:28992 RD New,
//! WGS 84, ETRS89 and its UTM zones 31N/32N, Web Mercator, Belgian Lambert 72), `ST_SetSRID`,
//! `ST_SRID` and `ST_DWithin`. Measurements are planar, in the units of the geometries' CRS.

pub mod crs;
pub mod functions;

use datafusion::execution::SessionState;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

/// `state` with every spatial function registered.
pub fn register(state: SessionState) -> SessionState {
    let ctx = SessionContext::new_with_state(state);
    geodatafusion::register(&ctx);
    // Every geometry a function returns is WKB, like the geometry columns.
    let spatial: Vec<ScalarUDF> = ctx
        .state()
        .scalar_functions()
        .iter()
        .filter(|(name, _)| name.starts_with("st_"))
        .map(|(_, udf)| udf.as_ref().clone())
        .collect();
    for udf in spatial {
        ctx.register_udf(ScalarUDF::new_from_impl(functions::AsWkb::new(udf)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(functions::Coordinate::X));
    ctx.register_udf(ScalarUDF::new_from_impl(functions::Coordinate::Y));
    ctx.register_udf(ScalarUDF::new_from_impl(functions::Transform));
    ctx.register_udf(ScalarUDF::new_from_impl(functions::SetSrid));
    ctx.register_udf(ScalarUDF::new_from_impl(functions::Srid));
    ctx.register_udf(ScalarUDF::new_from_impl(functions::DWithin));
    ctx.state()
}

#[cfg(test)]
mod tests;
