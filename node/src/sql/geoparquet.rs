//! GeoParquet 1.1 `geo` metadata for the WKB geometry columns of an exported result.
//!
//! A column is a geometry when its field carries the GeoArrow extension name `geoarrow.wkb`
//! (as the GeoJSON connector marks its `geometry` column); its GeoArrow `crs` becomes the
//! GeoParquet `crs`. The geometry types and the bounding box are gathered batch by batch while
//! the file is written, and the metadata goes into the footer.
//!
//! GeoParquet needs a CRS as PROJJSON; GeoArrow (and our GeoJSON connector) often names it
//! with an authority code. OGC:CRS84 is GeoParquet's default and is left out; the codes in
//! [`KNOWN_CRS`] are written as their PROJJSON (in `crs/`, made by PROJ 9.5.1 through pyproj
//! 3.7.2: `pyproj.CRS("EPSG:28992").to_json(pretty=True)`); any other is written as `null`,
//! "unknown", while the Arrow schema in the file still carries the GeoArrow metadata as given.
//!
//! Spec: <https://geoparquet.org/releases/v1.1.0/>, GeoArrow: <https://geoarrow.org/extension-types>.

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use serde_json::{Map, Value, json};

/// The GeoArrow extension name of WKB geometries.
pub const GEOARROW_WKB: &str = "geoarrow.wkb";
/// The key of the GeoParquet metadata in a Parquet file's key-value metadata.
pub const GEO_KEY: &str = "geo";
const VERSION: &str = "1.1.0";
/// Deepest nesting of geometry collections read for types and bounds.
const MAX_DEPTH: usize = 32;
/// The CRSs written as PROJJSON, by authority code: the Dutch national grid (RD New), WGS 84,
/// ETRS89 and Web Mercator.
const KNOWN_CRS: [(&str, &str); 4] = [
    ("EPSG:28992", include_str!("crs/EPSG_28992.json")),
    ("EPSG:4326", include_str!("crs/EPSG_4326.json")),
    ("EPSG:4258", include_str!("crs/EPSG_4258.json")),
    ("EPSG:3857", include_str!("crs/EPSG_3857.json")),
];

/// The `geo` metadata of a result, built up while its batches are written.
#[derive(Debug)]
pub struct GeoMetadata {
    columns: Vec<GeoColumn>,
}

#[derive(Debug)]
struct GeoColumn {
    index: usize,
    name: String,
    crs: Crs,
    spherical: bool,
    /// The geometry types seen, as GeoParquet names them; `None` once a value has a type
    /// GeoParquet 1.1 cannot list (M coordinates) or is not WKB we read.
    types: Option<BTreeSet<String>>,
    /// `[xmin, ymin, xmax, ymax]` of every coordinate seen; `None` before the first one.
    bbox: Option<[f64; 4]>,
    /// False once a value is not WKB we read: the bbox is then left out.
    readable: bool,
}

/// How a GeoArrow CRS is written in GeoParquet.
#[derive(Debug, Clone, PartialEq)]
enum Crs {
    /// OGC:CRS84, GeoParquet's default: the `crs` key is left out.
    Default,
    /// Not known, or known only by a name not in [`KNOWN_CRS`]: `null`.
    Unknown,
    /// A PROJJSON object.
    Projjson(Value),
}

impl GeoMetadata {
    /// The geometry columns of `schema`, or `None` when it has none.
    pub fn for_schema(schema: &Schema) -> Option<Self> {
        let columns: Vec<GeoColumn> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, field)| {
                field
                    .metadata()
                    .get("ARROW:extension:name")
                    .is_some_and(|name| name == GEOARROW_WKB)
                    && matches!(
                        field.data_type(),
                        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
                    )
            })
            .map(|(index, field)| {
                let extension: Option<Value> = field
                    .metadata()
                    .get("ARROW:extension:metadata")
                    .and_then(|text| serde_json::from_str(text).ok());
                let extension = extension.as_ref();
                GeoColumn {
                    index,
                    name: field.name().clone(),
                    crs: crs_of(extension.and_then(|m| m.get("crs"))),
                    spherical: extension
                        .and_then(|m| m.get("edges"))
                        .is_some_and(|e| e == "spherical"),
                    types: Some(BTreeSet::new()),
                    bbox: None,
                    readable: true,
                }
            })
            .collect();
        (!columns.is_empty()).then_some(Self { columns })
    }

    /// Adds the geometries of `batch` (of the schema this was made for).
    pub fn add(&mut self, batch: &RecordBatch) {
        for column in &mut self.columns {
            let array = batch.column(column.index);
            match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().iter().for_each(|v| column.add(v)),
                DataType::LargeBinary => {
                    array.as_binary::<i64>().iter().for_each(|v| column.add(v))
                }
                DataType::BinaryView => array.as_binary_view().iter().for_each(|v| column.add(v)),
                _ => column.readable = false,
            }
        }
    }

    /// The `geo` metadata as JSON text.
    pub fn to_json(&self) -> String {
        let mut columns = Map::new();
        for column in &self.columns {
            let mut meta = Map::new();
            meta.insert("encoding".into(), json!("WKB"));
            let types: Vec<&String> = column.types.iter().flatten().collect();
            meta.insert("geometry_types".into(), json!(types));
            match &column.crs {
                Crs::Default => {}
                Crs::Unknown => {
                    meta.insert("crs".into(), Value::Null);
                }
                Crs::Projjson(projjson) => {
                    meta.insert("crs".into(), projjson.clone());
                }
            }
            if column.spherical {
                meta.insert("edges".into(), json!("spherical"));
            }
            if let (true, Some(bbox)) = (column.readable, column.bbox) {
                meta.insert("bbox".into(), json!(bbox));
            }
            columns.insert(column.name.clone(), Value::Object(meta));
        }
        json!({
            "version": VERSION,
            "primary_column": self.columns[0].name,
            "columns": columns,
        })
        .to_string()
    }
}

impl GeoColumn {
    fn add(&mut self, value: Option<&[u8]>) {
        let Some(wkb) = value else { return };
        let mut reader = Wkb {
            bytes: wkb,
            position: 0,
        };
        match reader.geometry(&mut self.bbox, 0) {
            Some(kind) if reader.position == wkb.len() => {
                if let Some(types) = &mut self.types {
                    match kind.name() {
                        Some(name) => {
                            types.insert(name);
                        }
                        None => self.types = None,
                    }
                }
            }
            _ => {
                self.readable = false;
                self.types = None;
            }
        }
    }
}

/// The GeoParquet form of a GeoArrow `crs` value.
fn crs_of(crs: Option<&Value>) -> Crs {
    match crs {
        None | Some(Value::Null) => Crs::Unknown,
        Some(Value::Object(_)) => Crs::Projjson(crs.cloned().expect("matched")),
        Some(Value::String(text)) => {
            if let Ok(projjson @ Value::Object(_)) = serde_json::from_str(text) {
                return Crs::Projjson(projjson);
            }
            match text.as_str() {
                "OGC:CRS84" | "urn:ogc:def:crs:OGC:1.3:CRS84" | "urn:ogc:def:crs:OGC::CRS84" => {
                    Crs::Default
                }
                code => KNOWN_CRS
                    .iter()
                    .find(|(known, _)| known.eq_ignore_ascii_case(code))
                    .and_then(|(_, projjson)| serde_json::from_str(projjson).ok())
                    .map_or(Crs::Unknown, Crs::Projjson),
            }
        }
        Some(_) => Crs::Unknown,
    }
}

/// The type of one WKB geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Kind {
    /// 1 Point … 7 GeometryCollection.
    code: u32,
    z: bool,
    m: bool,
}

impl Kind {
    /// The GeoParquet 1.1 name (`Point`, `MultiPolygon Z`, …); none for types with M.
    fn name(self) -> Option<String> {
        let base = match self.code {
            1 => "Point",
            2 => "LineString",
            3 => "Polygon",
            4 => "MultiPoint",
            5 => "MultiLineString",
            6 => "MultiPolygon",
            7 => "GeometryCollection",
            _ => return None,
        };
        match (self.z, self.m) {
            (false, false) => Some(base.to_string()),
            (true, false) => Some(format!("{base} Z")),
            (_, true) => None,
        }
    }
}

/// A reader of ISO WKB (and the Z/M/SRID flags of PostGIS EWKB).
struct Wkb<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.position.checked_add(N)?;
        let bytes = self.bytes.get(self.position..end)?.try_into().ok()?;
        self.position = end;
        Some(bytes)
    }

    fn u32(&mut self, little: bool) -> Option<u32> {
        let bytes = self.take::<4>()?;
        Some(if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        })
    }

    fn f64(&mut self, little: bool) -> Option<f64> {
        let bytes = self.take::<8>()?;
        Some(if little {
            f64::from_le_bytes(bytes)
        } else {
            f64::from_be_bytes(bytes)
        })
    }

    /// Reads one geometry, widening `bbox` by its x and y; `None` if it is not WKB.
    fn geometry(&mut self, bbox: &mut Option<[f64; 4]>, depth: usize) -> Option<Kind> {
        if depth > MAX_DEPTH {
            return None;
        }
        let little = match self.take::<1>()?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let raw = self.u32(little)?;
        let iso = raw & 0x0fff_ffff;
        let (code, dimensions) = (iso % 1000, iso / 1000);
        let kind = Kind {
            code,
            z: raw & 0x8000_0000 != 0 || matches!(dimensions, 1 | 3),
            m: raw & 0x4000_0000 != 0 || matches!(dimensions, 2 | 3),
        };
        if dimensions > 3 {
            return None;
        }
        if raw & 0x2000_0000 != 0 {
            self.u32(little)?; // EWKB SRID
        }
        let ordinates = 2 + usize::from(kind.z) + usize::from(kind.m);
        match code {
            1 => self.points(1, ordinates, little, bbox)?,
            2 => {
                let n = self.u32(little)?;
                self.points(n, ordinates, little, bbox)?;
            }
            3 => {
                for _ in 0..self.u32(little)? {
                    let n = self.u32(little)?;
                    self.points(n, ordinates, little, bbox)?;
                }
            }
            4..=7 => {
                for _ in 0..self.u32(little)? {
                    self.geometry(bbox, depth + 1)?;
                }
            }
            _ => return None,
        }
        Some(kind)
    }

    fn points(
        &mut self,
        n: u32,
        ordinates: usize,
        little: bool,
        bbox: &mut Option<[f64; 4]>,
    ) -> Option<()> {
        let size = (n as usize).checked_mul(ordinates * 8)?;
        if self.bytes.len() - self.position < size {
            return None;
        }
        for _ in 0..n {
            let x = self.f64(little)?;
            let y = self.f64(little)?;
            for _ in 2..ordinates {
                self.f64(little)?;
            }
            // An empty point is NaN, NaN.
            if x.is_nan() || y.is_nan() {
                continue;
            }
            let b = bbox.get_or_insert([x, y, x, y]);
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, BinaryArray, BinaryViewArray, Int32Array};
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn point(x: f64, y: f64) -> Vec<u8> {
        let mut wkb = vec![1];
        wkb.extend(1u32.to_le_bytes());
        wkb.extend(x.to_le_bytes());
        wkb.extend(y.to_le_bytes());
        wkb
    }

    /// A big-endian ISO `LineString Z`.
    fn line_z(points: &[[f64; 3]]) -> Vec<u8> {
        let mut wkb = vec![0];
        wkb.extend(1002u32.to_be_bytes());
        wkb.extend((points.len() as u32).to_be_bytes());
        for p in points {
            p.iter().for_each(|v| wkb.extend(v.to_be_bytes()));
        }
        wkb
    }

    fn multi_polygon(rings: &[&[[f64; 2]]]) -> Vec<u8> {
        let mut wkb = vec![1];
        wkb.extend(6u32.to_le_bytes());
        wkb.extend((rings.len() as u32).to_le_bytes());
        for ring in rings {
            wkb.push(1);
            wkb.extend(3u32.to_le_bytes());
            wkb.extend(1u32.to_le_bytes());
            wkb.extend((ring.len() as u32).to_le_bytes());
            for p in *ring {
                p.iter().for_each(|v| wkb.extend(v.to_le_bytes()));
            }
        }
        wkb
    }

    fn geometry_field(name: &str, data_type: DataType, crs: Option<&str>) -> Field {
        let mut metadata =
            HashMap::from([("ARROW:extension:name".to_string(), GEOARROW_WKB.to_string())]);
        if let Some(crs) = crs {
            metadata.insert("ARROW:extension:metadata".into(), crs.to_string());
        }
        Field::new(name, data_type, true).with_metadata(metadata)
    }

    fn geo_json(schema: Schema, columns: Vec<ArrayRef>) -> Value {
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), columns).unwrap();
        let mut geo = GeoMetadata::for_schema(&schema).expect("geometry columns");
        geo.add(&batch.slice(0, 1));
        geo.add(&batch.slice(1, batch.num_rows() - 1));
        serde_json::from_str(&geo.to_json()).unwrap()
    }

    #[test]
    fn a_schema_without_geoarrow_columns_has_no_geo_metadata() {
        let schema = Schema::new(vec![
            Field::new("geometry", DataType::Binary, true),
            Field::new("n", DataType::Int32, true),
        ]);
        assert!(GeoMetadata::for_schema(&schema).is_none());
        // The extension name on a column that cannot hold WKB is not a geometry either.
        let schema = Schema::new(vec![geometry_field("g", DataType::Utf8, None)]);
        assert!(GeoMetadata::for_schema(&schema).is_none());
    }

    #[test]
    fn types_bbox_and_crs_of_each_geometry_column() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            geometry_field("geometry", DataType::Binary, Some(r#"{"crs":"OGC:CRS84"}"#)),
            geometry_field("area", DataType::BinaryView, Some(r#"{"crs":"EPSG:7415"}"#)),
        ]);
        let geo = geo_json(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(BinaryArray::from(vec![
                    Some(point(4.9, 52.4).as_slice()),
                    None,
                    Some(line_z(&[[5.1, 52.0, 1.0], [4.0, 53.5, 2.0]]).as_slice()),
                ])),
                Arc::new(BinaryViewArray::from(vec![
                    Some(
                        multi_polygon(&[&[[0.0, 0.0], [10.0, 0.0], [0.0, -5.0], [0.0, 0.0]]])
                            .as_slice(),
                    ),
                    Some(point(f64::NAN, f64::NAN).as_slice()),
                    None,
                ])),
            ],
        );
        assert_eq!(
            geo,
            json!({
                "version": "1.1.0",
                "primary_column": "geometry",
                "columns": {
                    "geometry": {
                        "encoding": "WKB",
                        "geometry_types": ["LineString Z", "Point"],
                        "bbox": [4.0, 52.0, 5.1, 53.5],
                    },
                    "area": {
                        "encoding": "WKB",
                        "geometry_types": ["MultiPolygon", "Point"],
                        "crs": null,
                        "bbox": [0.0, -5.0, 10.0, 0.0],
                    },
                }
            })
        );
    }

    #[test]
    fn projjson_is_kept_and_an_absent_crs_is_unknown() {
        let projjson = json!({"type": "GeographicCRS", "name": "WGS 84", "id": {"authority": "EPSG", "code": 4326}});
        let schema = Schema::new(vec![
            geometry_field(
                "a",
                DataType::Binary,
                Some(&json!({"crs": projjson, "edges": "spherical"}).to_string()),
            ),
            geometry_field("b", DataType::Binary, None),
        ]);
        let wkb = point(1.0, 2.0);
        let column: ArrayRef = Arc::new(BinaryArray::from(vec![Some(wkb.as_slice()); 2]));
        let geo = geo_json(schema, vec![column.clone(), column]);
        assert_eq!(geo["columns"]["a"]["crs"], projjson);
        assert_eq!(geo["columns"]["a"]["edges"], "spherical");
        assert_eq!(geo["columns"]["b"]["crs"], Value::Null);
        assert!(geo["columns"]["b"].get("edges").is_none());
    }

    #[test]
    fn known_authority_codes_become_projjson() {
        for (code, name) in [
            ("EPSG:28992", "Amersfoort / RD New"),
            ("epsg:4326", "WGS 84"),
            ("EPSG:4258", "ETRS89"),
            ("EPSG:3857", "WGS 84 / Pseudo-Mercator"),
        ] {
            let Crs::Projjson(projjson) = crs_of(Some(&json!(code))) else {
                panic!("{code} is known");
            };
            assert_eq!(projjson["name"], name);
            let id = &projjson["id"];
            assert_eq!(
                format!("{}:{}", id["authority"].as_str().unwrap(), id["code"]),
                code.to_uppercase()
            );
        }
        assert_eq!(crs_of(Some(&json!("OGC:CRS84"))), Crs::Default);
        assert_eq!(crs_of(Some(&json!("EPSG:7415"))), Crs::Unknown);
        assert_eq!(crs_of(Some(&json!(4326))), Crs::Unknown);
    }

    #[test]
    fn values_that_are_not_readable_wkb_leave_types_and_bbox_unknown() {
        let mut with_m = vec![1];
        with_m.extend(2001u32.to_le_bytes()); // Point M
        [1.0f64, 2.0, 3.0]
            .iter()
            .for_each(|v| with_m.extend(v.to_le_bytes()));
        let mut trailing = point(1.0, 2.0);
        trailing.push(0);
        for (values, bbox) in [
            (vec![point(1.0, 2.0), with_m], true),
            (vec![point(1.0, 2.0), b"POINT (1 2)".to_vec()], false),
            (vec![point(1.0, 2.0), point(3.0, 4.0)[..20].to_vec()], false),
            (vec![point(1.0, 2.0), trailing], false),
        ] {
            let schema = Schema::new(vec![geometry_field("g", DataType::Binary, None)]);
            let column = BinaryArray::from_iter_values(values.iter());
            let geo = geo_json(schema, vec![Arc::new(column)]);
            assert_eq!(geo["columns"]["g"]["geometry_types"], json!([]));
            assert_eq!(geo["columns"]["g"].get("bbox").is_some(), bbox, "{geo}");
        }
    }

    #[test]
    fn ewkb_flags_and_srid_are_read() {
        let mut wkb = vec![1];
        wkb.extend((0x8000_0000u32 | 0x2000_0000 | 1).to_le_bytes());
        wkb.extend(28992u32.to_le_bytes());
        [7.0f64, 8.0, 9.0]
            .iter()
            .for_each(|v| wkb.extend(v.to_le_bytes()));
        let mut bbox = None;
        let mut reader = Wkb {
            bytes: &wkb,
            position: 0,
        };
        let kind = reader.geometry(&mut bbox, 0).unwrap();
        assert_eq!(kind.name().as_deref(), Some("Point Z"));
        assert_eq!(bbox, Some([7.0, 8.0, 7.0, 8.0]));
        assert_eq!(reader.position, wkb.len());
    }
}
