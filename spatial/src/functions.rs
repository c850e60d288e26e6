//! The spatial functions geodatafusion does not have: `ST_Transform`, `ST_SetSRID`, `ST_SRID`
//! and `ST_DWithin`, on WKB (and every GeoArrow) geometry column.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, BinaryBuilder, BooleanBuilder, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use geo::{Distance, Euclidean, MapCoords};
use geo_traits::to_geo::ToGeoGeometry;
use geoarrow_array::array::from_arrow_array;
use geoarrow_array::cast::to_wkb;
use geoarrow_array::{GeoArrowArray, GeoArrowArrayAccessor};
use geoarrow_schema::WkbType;

use crate::crs;

static ANY_2: LazyLock<Signature> = LazyLock::new(|| Signature::any(2, Volatility::Immutable));
static ANY_1: LazyLock<Signature> = LazyLock::new(|| Signature::any(1, Volatility::Immutable));
static ANY_3: LazyLock<Signature> = LazyLock::new(|| Signature::any(3, Volatility::Immutable));
static TRANSFORM: LazyLock<Signature> = LazyLock::new(|| {
    Signature::one_of(
        vec![
            datafusion::logical_expr::TypeSignature::Any(2),
            datafusion::logical_expr::TypeSignature::Any(3),
        ],
        Volatility::Immutable,
    )
});

fn geo_error(function: &str, error: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("{function}: {error}"))
}

/// Each row of a geometry argument as a `geo` geometry (None for NULL), from WKB or any
/// GeoArrow type.
fn geometries(
    function: &str,
    array: &ArrayRef,
    field: &Field,
) -> Result<Vec<Option<geo::Geometry<f64>>>> {
    if array.data_type() == &DataType::Null {
        return Ok(vec![None; array.len()]);
    }
    let native = from_arrow_array(array.as_ref(), field).map_err(|e| {
        geo_error(
            function,
            format!("the argument is not a geometry (WKB, WKT or GeoArrow): {e}"),
        )
    })?;
    let wkb = to_wkb::<i32>(native.as_ref()).map_err(|e| geo_error(function, e))?;
    (0..wkb.len())
        .map(|i| {
            if wkb.is_null(i) {
                return Ok(None);
            }
            let value = wkb
                .value(i)
                .map_err(|e| geo_error(function, format!("malformed WKB in row {i}: {e}")))?;
            value
                .try_to_geometry()
                .map(Some)
                .ok_or_else(|| geo_error(function, format!("row {i} is an empty point")))
        })
        .collect()
}

fn write_wkb(function: &str, geometry: &geo::Geometry<f64>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    wkb::writer::write_geometry(&mut out, geometry, &Default::default())
        .map_err(|e| geo_error(function, e))?;
    Ok(out)
}

/// An integer SRID argument that is a literal, at planning time.
fn literal_srid(value: Option<&ScalarValue>) -> Option<u32> {
    let value = value?.cast_to(&DataType::Int64).ok()?;
    match value {
        ScalarValue::Int64(Some(v)) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// An SRID argument at execution: a literal (columns of SRIDs are refused).
fn srid_argument(function: &str, value: &ColumnarValue, position: &str) -> Result<u32> {
    match value {
        ColumnarValue::Scalar(scalar) => literal_srid(Some(scalar)).ok_or_else(|| {
            geo_error(
                function,
                format!("the {position} SRID must be a positive integer, not {scalar}"),
            )
        }),
        ColumnarValue::Array(_) => exec_err!("{function}: the {position} SRID must be a constant"),
    }
}

fn wkb_field(name: &str, srid: Option<u32>) -> FieldRef {
    Arc::new(
        Field::new(name, DataType::Binary, true)
            .with_extension_type(WkbType::new(crs::metadata_for(srid))),
    )
}

/// `ST_Transform(geom, to_srid)` (the source CRS from the column's GeoArrow metadata) and
/// `ST_Transform(geom, from_srid, to_srid)`: the geometry's coordinates in another CRS, as WKB
/// whose metadata names the target.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Transform;

impl ScalarUDFImpl for Transform {
    fn name(&self) -> &str {
        "st_transform"
    }

    fn signature(&self) -> &Signature {
        &TRANSFORM
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let target = literal_srid(args.scalar_arguments.last().copied().flatten());
        if let Some(code) = target
            && crs::projection(code).is_none()
        {
            return plan_err!(
                "ST_Transform: EPSG:{code} is not a CRS this node transforms; it knows {}",
                crs::known_codes()
            );
        }
        Ok(wkb_field(self.name(), target))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        const NAME: &str = "ST_Transform";
        let to = srid_argument(
            NAME,
            args.args.last().expect("two or three arguments"),
            "target",
        )?;
        let from = if args.args.len() == 3 {
            srid_argument(NAME, &args.args[1], "source")?
        } else {
            crs::srid_of_field(&args.arg_fields[0]).ok_or_else(|| {
                geo_error(
                    NAME,
                    "the geometry's CRS is not known (its column has no GeoArrow CRS); \
                     give it: ST_Transform(geom, from_srid, to_srid)",
                )
            })?
        };
        let projection = |code: u32| {
            crs::projection(code).ok_or_else(|| {
                geo_error(
                    NAME,
                    format!(
                        "EPSG:{code} is not a CRS this node transforms; it knows {}",
                        crs::known_codes()
                    ),
                )
            })
        };
        let (source, target) = (projection(from)?, projection(to)?);
        let arrays = ColumnarValue::values_to_arrays(&args.args[..1])?;
        let mut out = BinaryBuilder::new();
        for geometry in geometries(NAME, &arrays[0], &args.arg_fields[0])? {
            let Some(geometry) = geometry else {
                out.append_null();
                continue;
            };
            let moved = geometry.try_map_coords(|c| {
                let mut point = if crs::is_geographic(from) {
                    (c.x.to_radians(), c.y.to_radians(), 0.0)
                } else {
                    (c.x, c.y, 0.0)
                };
                proj4rs::transform::transform(&source, &target, &mut point)?;
                let (x, y) = if crs::is_geographic(to) {
                    (point.0.to_degrees(), point.1.to_degrees())
                } else {
                    (point.0, point.1)
                };
                Ok::<_, proj4rs::errors::Error>(geo::Coord { x, y })
            });
            let moved = moved.map_err(|e| {
                geo_error(
                    NAME,
                    format!("cannot transform EPSG:{from} to EPSG:{to}: {e}"),
                )
            })?;
            out.append_value(write_wkb(NAME, &moved)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `ST_SetSRID(geom, srid)`: the same geometry (as WKB) with its CRS stated, for columns
/// without GeoArrow metadata.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SetSrid;

impl ScalarUDFImpl for SetSrid {
    fn name(&self) -> &str {
        "st_setsrid"
    }

    fn signature(&self) -> &Signature {
        &ANY_2
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(wkb_field(
            self.name(),
            literal_srid(args.scalar_arguments.get(1).copied().flatten()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        const NAME: &str = "ST_SetSRID";
        srid_argument(NAME, &args.args[1], "given")?;
        let arrays = ColumnarValue::values_to_arrays(&args.args[..1])?;
        let native = from_arrow_array(arrays[0].as_ref(), &args.arg_fields[0])
            .map_err(|e| geo_error(NAME, format!("the argument is not a geometry: {e}")))?;
        let wkb = to_wkb::<i32>(native.as_ref()).map_err(|e| geo_error(NAME, e))?;
        let binary = cast(&wkb.to_array_ref(), &DataType::Binary)?;
        Ok(ColumnarValue::Array(binary))
    }
}

/// `ST_SRID(geom)`: the EPSG code of the geometry's CRS (its column's GeoArrow metadata), or
/// NULL when it is not stated.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Srid;

impl ScalarUDFImpl for Srid {
    fn name(&self) -> &str {
        "st_srid"
    }

    fn signature(&self) -> &Signature {
        &ANY_1
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let srid = crs::srid_of_field(&args.arg_fields[0]).and_then(|c| i32::try_from(c).ok());
        Ok(ColumnarValue::Scalar(ScalarValue::Int32(srid)))
    }
}

/// `ST_DWithin(a, b, distance)`: whether the planar distance between two geometries is at most
/// `distance`, in the units of their CRS (metres in EPSG:28992; transform WGS84 first).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DWithin;

impl ScalarUDFImpl for DWithin {
    fn name(&self) -> &str {
        "st_dwithin"
    }

    fn signature(&self) -> &Signature {
        &ANY_3
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        const NAME: &str = "ST_DWithin";
        let (a_srid, b_srid) = (
            crs::srid_of_field(&args.arg_fields[0]),
            crs::srid_of_field(&args.arg_fields[1]),
        );
        if let (Some(a), Some(b)) = (a_srid, b_srid)
            && a != b
        {
            return exec_err!(
                "{NAME}: the geometries are in different CRSs (EPSG:{a} and EPSG:{b}); \
                 ST_Transform one of them first"
            );
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let a = geometries(NAME, &arrays[0], &args.arg_fields[0])?;
        let b = geometries(NAME, &arrays[1], &args.arg_fields[1])?;
        let distance = cast(&arrays[2], &DataType::Float64)
            .map_err(|_| geo_error(NAME, "the distance must be a number"))?;
        let distance = distance
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        let mut out = BooleanBuilder::with_capacity(a.len());
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            match (a, b, distance.is_null(i)) {
                (Some(a), Some(b), false) => {
                    out.append_value(Euclidean.distance(a, b) <= distance.value(i))
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `ST_X(point)` and `ST_Y(point)` on WKB as well as GeoArrow points (geodatafusion's take only
/// GeoArrow points): the coordinate, NULL for NULL, an error naming the type for another
/// geometry.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Coordinate {
    name: &'static str,
    y: bool,
}

impl Coordinate {
    /// `ST_X`.
    pub const X: Self = Self {
        name: "st_x",
        y: false,
    };
    /// `ST_Y`.
    pub const Y: Self = Self {
        name: "st_y",
        y: true,
    };
}

impl ScalarUDFImpl for Coordinate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &ANY_1
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let function = if self.y { "ST_Y" } else { "ST_X" };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let values: Vec<Option<f64>> = geometries(function, &arrays[0], &args.arg_fields[0])?
            .into_iter()
            .map(|geometry| match geometry {
                None => Ok(None),
                Some(geo::Geometry::Point(p)) => Ok(Some(if self.y { p.y() } else { p.x() })),
                Some(other) => exec_err!(
                    "{function}: the geometry is a {}, not a point",
                    geometry_type(&other)
                ),
            })
            .collect::<Result<_>>()?;
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(values))))
    }
}

fn geometry_type(geometry: &geo::Geometry<f64>) -> &'static str {
    match geometry {
        geo::Geometry::Point(_) => "Point",
        geo::Geometry::Line(_) | geo::Geometry::LineString(_) => "LineString",
        geo::Geometry::Polygon(_) | geo::Geometry::Rect(_) | geo::Geometry::Triangle(_) => {
            "Polygon"
        }
        geo::Geometry::MultiPoint(_) => "MultiPoint",
        geo::Geometry::MultiLineString(_) => "MultiLineString",
        geo::Geometry::MultiPolygon(_) => "MultiPolygon",
        geo::Geometry::GeometryCollection(_) => "GeometryCollection",
    }
}

/// A geodatafusion function as Polder serves it: geometries it returns in a GeoArrow native
/// type (points, polygons, ... as structs and lists) come out as WKB (`geoarrow.wkb`, the CRS
/// kept), the one geometry type of Polder's columns, which every Flight SQL client can decode
/// and the unparser can write into SQL for a peer as a binary literal; and a NULL argument of
/// type Null gives NULL (SQL's strict functions), where geodatafusion would fail on it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsWkb {
    inner: datafusion::logical_expr::ScalarUDF,
}

impl AsWkb {
    /// Wraps `inner`.
    pub fn new(inner: datafusion::logical_expr::ScalarUDF) -> Self {
        Self { inner }
    }
}

/// Whether a field holds geometries in a GeoArrow native (not WKB or WKT) type.
fn is_native_geometry(field: &Field) -> bool {
    field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|name| name.starts_with("geoarrow."))
        && !matches!(
            field.data_type(),
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        )
}

fn as_wkb_field(field: &Field) -> FieldRef {
    let mut metadata = field.metadata().clone();
    metadata.insert("ARROW:extension:name".into(), "geoarrow.wkb".into());
    Arc::new(
        Field::new(field.name(), DataType::Binary, field.is_nullable()).with_metadata(metadata),
    )
}

impl ScalarUDFImpl for AsWkb {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let field = self.inner.return_field_from_args(args)?;
        Ok(if is_native_geometry(&field) {
            as_wkb_field(&field)
        } else {
            field
        })
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Strict: a NULL constant (of type Null, or a typed NULL) gives NULL for every row.
        if args.args.iter().any(|a| match a {
            ColumnarValue::Scalar(s) => s.is_null(),
            ColumnarValue::Array(a) => a.data_type() == &DataType::Null,
        }) {
            let null = ScalarValue::try_from(args.return_field.data_type())?;
            return Ok(ColumnarValue::Scalar(null));
        }
        let scalars: Vec<Option<&ScalarValue>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let inner_field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &args.arg_fields,
            scalar_arguments: &scalars,
        })?;
        let native = is_native_geometry(&inner_field);
        let all_scalars = scalars.iter().all(Option::is_some);
        let number_rows = args.number_rows;
        let result = self.inner.invoke_with_args(ScalarFunctionArgs {
            return_field: Arc::clone(&inner_field),
            ..args
        })?;
        if let ColumnarValue::Array(array) = &result
            && array.len() != number_rows
        {
            // Never a short column (rows would silently go missing).
            return datafusion::common::internal_err!(
                "{} returned {} values for {} rows",
                self.inner.name(),
                array.len(),
                number_rows
            );
        }
        if !native {
            return Ok(result);
        }
        let array = result.to_array(1)?;
        let geometries = from_arrow_array(array.as_ref(), &inner_field)
            .map_err(|e| geo_error(self.inner.name(), e))?;
        let wkb =
            to_wkb::<i32>(geometries.as_ref()).map_err(|e| geo_error(self.inner.name(), e))?;
        let binary = cast(&wkb.to_array_ref(), &DataType::Binary)?;
        Ok(match result {
            ColumnarValue::Scalar(_) if all_scalars => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&binary, 0)?)
            }
            _ => ColumnarValue::Array(binary),
        })
    }
}
