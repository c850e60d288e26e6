//! The coordinate reference systems `ST_Transform` knows, by EPSG code, and the CRS a geometry
//! column carries in its GeoArrow metadata.

use std::sync::Arc;

use datafusion::arrow::datatypes::Field;
use geoarrow_schema::{Crs, Metadata};
use proj4rs::proj::Proj;

/// EPSG codes `ST_Transform` converts between, with their PROJ definitions. Geographic
/// systems take and give longitude, latitude in degrees (x, y), as PostGIS does.
const KNOWN: &[(u32, &str, &str)] = &[
    (4326, "WGS 84", "+proj=longlat +datum=WGS84 +no_defs"),
    (
        4258,
        "ETRS89",
        "+proj=longlat +ellps=GRS80 +towgs84=0,0,0 +no_defs",
    ),
    (
        28992,
        "Amersfoort / RD New",
        "+proj=sterea +lat_0=52.1561605555556 +lon_0=5.38763888888889 +k=0.9999079 \
         +x_0=155000 +y_0=463000 +ellps=bessel \
         +towgs84=565.417,50.3319,465.552,-0.398957,0.343988,-1.8774,4.0725 +units=m +no_defs",
    ),
    (
        3857,
        "WGS 84 / Pseudo-Mercator",
        "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +units=m \
         +nadgrids=@null +no_defs",
    ),
    (
        25831,
        "ETRS89 / UTM zone 31N",
        "+proj=utm +zone=31 +ellps=GRS80 +towgs84=0,0,0 +units=m +no_defs",
    ),
    (
        25832,
        "ETRS89 / UTM zone 32N",
        "+proj=utm +zone=32 +ellps=GRS80 +towgs84=0,0,0 +units=m +no_defs",
    ),
    (
        31370,
        "Belge 1972 / Belgian Lambert 72",
        "+proj=lcc +lat_0=90 +lon_0=4.36748666666667 +lat_1=51.1666672333333 \
         +lat_2=49.8333339 +x_0=150000.013 +y_0=5400088.438 +ellps=intl \
         +towgs84=-106.8686,52.2978,-103.7239,0.3366,-0.457,1.8422,-1.2747 +units=m +no_defs",
    ),
];

/// The EPSG codes `ST_Transform` knows, for error messages and the docs.
pub fn known_codes() -> String {
    KNOWN
        .iter()
        .map(|(code, name, _)| format!("{code} ({name})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The projection of an EPSG code, if known.
pub fn projection(code: u32) -> Option<Proj> {
    let (_, _, definition) = KNOWN.iter().find(|(c, _, _)| *c == code)?;
    Some(Proj::from_proj_string(definition).expect("the built-in PROJ definitions parse"))
}

/// Whether a code is geographic (degrees), so coordinates convert to and from radians.
pub fn is_geographic(code: u32) -> bool {
    matches!(code, 4326 | 4258)
}

/// The EPSG code of a column's CRS from its GeoArrow metadata: `EPSG:n` (or `OGC:CRS84`, which
/// is WGS 84 in longitude, latitude order) as text, or PROJJSON with an EPSG `id`.
pub fn srid_of_field(field: &Field) -> Option<u32> {
    let metadata = Metadata::try_from(field).ok()?;
    srid_of(metadata.crs())
}

fn srid_of(crs: &Crs) -> Option<u32> {
    let value = crs.crs_value()?;
    if let Some(text) = value.as_str() {
        return srid_of_text(text);
    }
    let id = value.get("id")?;
    let authority = id.get("authority")?.as_str()?;
    let code = id.get("code")?;
    let code = code
        .as_u64()
        .map(|c| c.to_string())
        .or_else(|| code.as_str().map(str::to_string))?;
    srid_of_text(&format!("{authority}:{code}"))
}

fn srid_of_text(text: &str) -> Option<u32> {
    let (authority, code) = text.trim().split_once(':')?;
    match authority.to_ascii_uppercase().as_str() {
        "EPSG" => code.trim().parse().ok(),
        "OGC" if code.eq_ignore_ascii_case("CRS84") => Some(4326),
        _ => None,
    }
}

/// GeoArrow metadata naming `EPSG:<code>` (nothing for 0: unknown).
pub fn metadata_for(code: Option<u32>) -> Arc<Metadata> {
    match code {
        Some(code) if code != 0 => Arc::new(Metadata::new(
            Crs::from_authority_code(format!("EPSG:{code}")),
            None,
        )),
        _ => Arc::new(Metadata::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_crs_is_read_from_geoarrow_metadata() {
        let field = |metadata: &str| {
            Field::new("g", datafusion::arrow::datatypes::DataType::Binary, true).with_metadata(
                HashMap::from([
                    ("ARROW:extension:name".into(), "geoarrow.wkb".into()),
                    ("ARROW:extension:metadata".into(), metadata.into()),
                ]),
            )
        };
        assert_eq!(
            srid_of_field(&field(r#"{"crs":"EPSG:28992"}"#)),
            Some(28992)
        );
        assert_eq!(srid_of_field(&field(r#"{"crs":"OGC:CRS84"}"#)), Some(4326));
        assert_eq!(
            srid_of_field(&field(
                r#"{"crs":{"id":{"authority":"EPSG","code":25832}},"crs_type":"projjson"}"#
            )),
            Some(25832)
        );
        assert_eq!(srid_of_field(&field("{}")), None);
        let plain = Field::new("g", datafusion::arrow::datatypes::DataType::Binary, true);
        assert_eq!(srid_of_field(&plain), None);
    }

    #[test]
    fn every_built_in_definition_parses() {
        for (code, _, _) in KNOWN {
            assert!(projection(*code).is_some());
        }
        assert!(projection(2154).is_none());
    }
}
