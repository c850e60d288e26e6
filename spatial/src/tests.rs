use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::prelude::SessionContext;

use super::register;

fn ctx() -> SessionContext {
    SessionContext::new_with_state(register(SessionContext::new().state()))
}

async fn floats(ctx: &SessionContext, sql: &str) -> Vec<f64> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for batch in batches {
        for column in batch.columns() {
            let column = datafusion::arrow::compute::cast(
                column,
                &datafusion::arrow::datatypes::DataType::Float64,
            )
            .unwrap();
            out.extend(
                column
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN)),
            );
        }
    }
    out
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df.collect().await.unwrap_err().to_string(),
    }
}

/// Reference points of the RD system (RDNAPTRANS): the Amersfoort origin and the Westertoren.
/// proj4rs's seven-parameter datum shift is within a metre of the official grid.
#[tokio::test]
async fn rd_new_and_wgs84_convert_within_a_metre() {
    let ctx = ctx();
    let rd = floats(
        &ctx,
        "SELECT ST_X(g), ST_Y(g) FROM (SELECT ST_GeomFromWKB(ST_Transform(ST_Point(4.88352559, 52.37453253), 4326, 28992)) AS g)",
    )
    .await;
    assert!(
        (rd[0] - 120_700.723).abs() < 1.0 && (rd[1] - 487_525.501).abs() < 1.0,
        "{rd:?}"
    );
    let wgs = floats(
        &ctx,
        "SELECT ST_X(g), ST_Y(g) FROM (SELECT ST_GeomFromWKB(ST_Transform(ST_Point(155000, 463000), 28992, 4326)) AS g)",
    )
    .await;
    // 1e-5 degrees is about a metre.
    assert!(
        (wgs[0] - 5.387_206_21).abs() < 1e-5 && (wgs[1] - 52.155_174_40).abs() < 1e-5,
        "{wgs:?}"
    );
}

#[tokio::test]
async fn transform_uses_the_columns_crs_and_names_the_target() {
    let ctx = ctx();
    let srid = floats(
        &ctx,
        "SELECT ST_SRID(ST_Transform(ST_SetSRID(ST_GeomFromText('POINT(5.1214 52.0907)'), 4326), 28992))",
    )
    .await;
    assert_eq!(srid, vec![28992.0]);
    let distance = floats(
        &ctx,
        "SELECT ST_Distance(ST_Transform(ST_SetSRID(ST_GeomFromText('POINT(5.1214 52.0907)'), 4326), 28992), \
                            ST_Transform(ST_SetSRID(ST_GeomFromText('POINT(5.1314 52.0907)'), 4326), 28992))",
    )
    .await;
    // 0.01 degrees of longitude at 52.09 N is about 685 m.
    assert!((distance[0] - 685.0).abs() < 5.0, "{distance:?}");
    let unknown = error(
        &ctx,
        "SELECT ST_Transform(ST_GeomFromText('POINT(1 2)'), 28992)",
    )
    .await;
    assert!(unknown.contains("CRS is not known"), "{unknown}");
    let unsupported = error(
        &ctx,
        "SELECT ST_Transform(ST_GeomFromText('POINT(1 2)'), 4326, 2154)",
    )
    .await;
    assert!(
        unsupported.contains("EPSG:2154 is not a CRS this node transforms"),
        "{unsupported}"
    );
}

#[tokio::test]
async fn dwithin_contains_and_area_work_on_wkb() {
    let ctx = ctx();
    let rows = floats(
        &ctx,
        "SELECT CAST(ST_DWithin(ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(3 4)'), 5) AS INT), \
                CAST(ST_DWithin(ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(3 4)'), 4.99) AS INT), \
                CAST(ST_Contains(ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'), ST_Point(5, 5)) AS INT), \
                ST_Area(ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'))",
    )
    .await;
    assert_eq!(rows, vec![1.0, 0.0, 1.0, 100.0]);
    let mixed = error(
        &ctx,
        "SELECT ST_DWithin(ST_SetSRID(ST_GeomFromText('POINT(0 0)'), 4326), ST_SetSRID(ST_GeomFromText('POINT(0 0)'), 28992), 1)",
    )
    .await;
    assert!(mixed.contains("different CRSs"), "{mixed}");
    let null = ctx
        .sql("SELECT ST_DWithin(ST_GeomFromText('POINT(0 0)'), NULL, 1)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(null[0].column(0).is_null(0));
}

#[tokio::test]
async fn geometries_come_out_as_wkb_and_null_gives_null() {
    let ctx = ctx();
    let df = ctx
        .sql("SELECT ST_Point(1.5, 2.5) AS p, ST_Centroid(ST_GeomFromText('POLYGON((0 0, 2 0, 2 2, 0 2, 0 0))')) AS c, ST_Area(NULL) AS a, ST_X(ST_GeomFromText('POINT(3 4)')) AS x")
        .await
        .unwrap();
    let schema = df.schema().as_arrow().clone();
    let batches = df.collect().await.unwrap();
    for name in ["p", "c"] {
        let field = schema.field_with_name(name).unwrap();
        assert_eq!(
            field.data_type(),
            &datafusion::arrow::datatypes::DataType::Binary,
            "{name}"
        );
        assert_eq!(
            field.metadata()["ARROW:extension:name"],
            "geoarrow.wkb",
            "{name}"
        );
    }
    let wkb = batches[0].column(0).as_binary::<i32>().value(0);
    // Little-endian WKB point 1.5, 2.5.
    assert_eq!(&wkb[..5], &[1, 1, 0, 0, 0]);
    assert_eq!(f64::from_le_bytes(wkb[5..13].try_into().unwrap()), 1.5);
    assert!(batches[0].column(2).is_null(0));
    assert_eq!(
        floats(
            &ctx,
            "SELECT ST_X(ST_GeomFromText('POINT(3 4)')), ST_Y(ST_GeomFromText('POINT(3 4)'))"
        )
        .await,
        vec![3.0, 4.0]
    );
    let line = error(&ctx, "SELECT ST_X(ST_GeomFromText('LINESTRING(0 0, 1 1)'))").await;
    assert!(
        line.contains("ST_X: the geometry is a LineString, not a point"),
        "{line}"
    );
}

/// geodatafusion's predicates return no value at all for a typed NULL constant; the wrapper
/// answers NULL for every row instead of dropping them.
#[tokio::test]
async fn a_typed_null_argument_gives_a_null_per_row() {
    let ctx = ctx();
    let batches = ctx
        .sql("SELECT ST_Intersects(g, CAST(NULL AS BYTEA)) AS hit FROM (VALUES (ST_GeomFromText('POINT(0 0)')), (ST_GeomFromText('POINT(1 1)'))) AS t(g)")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 2);
    assert!(
        batches
            .iter()
            .all(|b| b.column(0).null_count() == b.num_rows())
    );
}
