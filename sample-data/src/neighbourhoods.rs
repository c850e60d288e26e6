//! `neighbourhoods.geojson`: neighbourhood polygons with population figures, modelled on CBS
//! "Wijken en Buurten".
//!
//! The neighbourhoods are the cells of a 4 x 3 grid around the city centre. Grid corners and edge
//! midpoints are jittered and shared by the cells that meet there, so the polygons look hand-drawn
//! yet tile the area without gaps or overlaps.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::city::City;
use crate::rng::{self, round_to, uniform};
use crate::{Context, Error};

/// Grid rows (south to north) and columns (west to east).
const ROWS: usize = 3;
const COLS: usize = 4;
/// Cell size in degrees: about 780 m north-south and 820 m east-west at 52° N.
const LAT_STEP: f64 = 0.0070;
const LON_STEP: f64 = 0.0120;

/// A position as GeoJSON orders it: longitude, latitude.
pub(crate) type Position = [f64; 2];

/// One neighbourhood (CBS "buurt") with the hidden traits the other tables are generated from.
pub(crate) struct Neighbourhood {
    pub code: String,
    pub name: &'static str,
    /// Closed, counter-clockwise exterior ring (first position repeated at the end).
    pub ring: Vec<Position>,
    /// South-west, south-east, north-east and north-west corners, for placing points inside.
    corners: [Position; 4],
    pub population: i64,
    pub households: i64,
    pub area_ha: f64,
    pub share_65_plus: f64,
    /// Relative amount of motor traffic (about 0.4 to 1.6).
    pub traffic: f64,
    /// How residential the neighbourhood is (0.2 to 1), which drives evening wood burning.
    pub residential: f64,
    /// Exposure to the port (0 to 1); zero outside Rotterdam.
    pub port: f64,
}

impl Neighbourhood {
    /// The point at fractions `u` (west to east) and `v` (south to north) of the cell; inside the
    /// polygon for `u` and `v` between 0.2 and 0.8.
    pub(crate) fn point_at(&self, u: f64, v: f64) -> Position {
        let [sw, se, ne, nw] = self.corners;
        let lerp =
            |a: Position, b: Position, t: f64| [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
        lerp(lerp(sw, se, u), lerp(nw, ne, u), v)
    }
}

/// The schema of [`crate::neighbourhoods()`].
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("municipality_code", DataType::Utf8, false),
        Field::new("municipality", DataType::Utf8, false),
        Field::new("population", DataType::Int64, false),
        Field::new("households", DataType::Int64, false),
        Field::new("area_ha", DataType::Float64, false),
        Field::new("share_65_plus", DataType::Float64, false),
        Field::new("geometry", DataType::Binary, false),
    ]))
}

/// The neighbourhoods of `city`, row by row from the south-west.
pub(crate) fn generate(city: &City) -> Vec<Neighbourhood> {
    let mut rng = rng::seeded(&format!("{}/neighbourhoods", city.name));
    let (centre_lat, centre_lon) = city.centre;

    let corners: Vec<Vec<Position>> = (0..=ROWS)
        .map(|row| {
            (0..=COLS)
                .map(|col| {
                    let lon = centre_lon + (col as f64 - COLS as f64 / 2.0) * LON_STEP;
                    let lat = centre_lat + (row as f64 - ROWS as f64 / 2.0) * LAT_STEP;
                    [
                        round_to(lon + uniform(&mut rng, -0.12, 0.12) * LON_STEP, 6),
                        round_to(lat + uniform(&mut rng, -0.12, 0.12) * LAT_STEP, 6),
                    ]
                })
                .collect()
        })
        .collect();
    // Midpoints of the west-east edges, pushed north or south, and of the south-north edges,
    // pushed east or west.
    let east_west_mid: Vec<Vec<Position>> = (0..=ROWS)
        .map(|row| {
            (0..COLS)
                .map(|col| {
                    let [a, b] = [corners[row][col], corners[row][col + 1]];
                    let shift = uniform(&mut rng, -0.08, 0.08) * LAT_STEP;
                    [
                        round_to((a[0] + b[0]) / 2.0, 6),
                        round_to((a[1] + b[1]) / 2.0 + shift, 6),
                    ]
                })
                .collect()
        })
        .collect();
    let south_north_mid: Vec<Vec<Position>> = (0..ROWS)
        .map(|row| {
            (0..=COLS)
                .map(|col| {
                    let [a, b] = [corners[row][col], corners[row + 1][col]];
                    let shift = uniform(&mut rng, -0.08, 0.08) * LON_STEP;
                    [
                        round_to((a[0] + b[0]) / 2.0 + shift, 6),
                        round_to((a[1] + b[1]) / 2.0, 6),
                    ]
                })
                .collect()
        })
        .collect();

    let mut neighbourhoods = Vec::with_capacity(ROWS * COLS);
    for row in 0..ROWS {
        for col in 0..COLS {
            let sw = corners[row][col];
            let se = corners[row][col + 1];
            let ne = corners[row + 1][col + 1];
            let nw = corners[row + 1][col];
            let ring = vec![
                sw,
                east_west_mid[row][col],
                se,
                south_north_mid[row][col + 1],
                ne,
                east_west_mid[row + 1][col],
                nw,
                south_north_mid[row][col],
                sw,
            ];
            let area_ha = round_to(area_m2(&ring) / 10_000.0, 2);

            // Distance from the grid centre, 0.24 for the central cells and 1 for the corners.
            let dx = (col as f64 - 1.5) / 1.5;
            let dy = row as f64 - 1.0;
            let distance = (dx * dx + dy * dy).sqrt() / 2f64.sqrt();
            let traffic = (1.35 - 0.5 * distance + uniform(&mut rng, -0.25, 0.25)).max(0.4);
            let residential =
                (0.45 + 0.5 * distance + uniform(&mut rng, -0.1, 0.1)).clamp(0.2, 1.0);
            let port = if city.port {
                (COLS - 1 - col) as f64 / (COLS - 1) as f64 * 0.6
                    + (ROWS - 1 - row) as f64 / (ROWS - 1) as f64 * 0.4
            } else {
                0.0
            };

            let people = area_ha / 100.0
                * city.density
                * (0.55 + 0.7 * residential)
                * uniform(&mut rng, 0.8, 1.2);
            let population = (people / 5.0).round() as i64 * 5;
            let household_size =
                city.household_size * (0.9 + 0.2 * residential) * uniform(&mut rng, 0.88, 1.12);
            let households = (population as f64 / household_size / 10.0).round() as i64 * 10;
            let share_65_plus = round_to(
                (9.0 + 10.0 * residential * uniform(&mut rng, 0.6, 1.4)
                    + uniform(&mut rng, -2.0, 2.0))
                .clamp(5.0, 25.0),
                1,
            );

            neighbourhoods.push(Neighbourhood {
                code: format!("BU{}{row:02}{col:02}", &city.municipality_code[2..]),
                name: city.neighbourhood_names[row][col],
                ring,
                corners: [sw, se, ne, nw],
                population,
                households,
                area_ha,
                share_65_plus,
                traffic,
                residential,
                port,
            });
        }
    }
    neighbourhoods
}

/// Area of a closed lon/lat ring in m², on a local equirectangular projection.
fn area_m2(ring: &[Position]) -> f64 {
    let latitude = ring[0][1].to_radians();
    let metres_per_lon = 111_320.0 * latitude.cos();
    let metres_per_lat = 110_574.0;
    let twice_area: f64 = ring
        .windows(2)
        .map(|pair| {
            let [x0, y0] = [pair[0][0] * metres_per_lon, pair[0][1] * metres_per_lat];
            let [x1, y1] = [pair[1][0] * metres_per_lon, pair[1][1] * metres_per_lat];
            x0 * y1 - x1 * y0
        })
        .sum();
    twice_area.abs() / 2.0
}

/// Well-known binary (little endian) of a one-ring polygon.
fn wkb_polygon(ring: &[Position]) -> Vec<u8> {
    let mut wkb = Vec::with_capacity(13 + 16 * ring.len());
    wkb.push(1); // little endian
    wkb.extend_from_slice(&3u32.to_le_bytes()); // Polygon
    wkb.extend_from_slice(&1u32.to_le_bytes()); // one ring
    wkb.extend_from_slice(&(ring.len() as u32).to_le_bytes());
    for [lon, lat] in ring {
        wkb.extend_from_slice(&lon.to_le_bytes());
        wkb.extend_from_slice(&lat.to_le_bytes());
    }
    wkb
}

pub(crate) fn to_batch(context: &Context) -> Result<RecordBatch, Error> {
    let city = context.city;
    let items = &context.neighbourhoods;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|n| n.code.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(items.iter().map(|n| n.name))),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|_| city.municipality_code),
        )),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|_| city.municipality),
        )),
        Arc::new(Int64Array::from_iter_values(
            items.iter().map(|n| n.population),
        )),
        Arc::new(Int64Array::from_iter_values(
            items.iter().map(|n| n.households),
        )),
        Arc::new(Float64Array::from_iter_values(
            items.iter().map(|n| n.area_ha),
        )),
        Arc::new(Float64Array::from_iter_values(
            items.iter().map(|n| n.share_65_plus),
        )),
        Arc::new(BinaryArray::from_iter_values(
            items.iter().map(|n| wkb_polygon(&n.ring)),
        )),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The GeoJSON FeatureCollection (RFC 7946, so WGS84 longitude/latitude and no `crs` member),
/// one feature per line.
pub(crate) fn to_geojson(context: &Context) -> String {
    let city = context.city;
    let mut out = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    for (index, n) in context.neighbourhoods.iter().enumerate() {
        let coordinates: Vec<String> = n
            .ring
            .iter()
            .map(|[lon, lat]| format!("[{lon:.6},{lat:.6}]"))
            .collect();
        // writing to a String cannot fail
        let _ = write!(
            out,
            "{{\"type\":\"Feature\",\"properties\":{{\"code\":{},\"name\":{},\"municipality_code\":{},\
             \"municipality\":{},\"population\":{},\"households\":{},\"area_ha\":{:.2},\
             \"share_65_plus\":{:.1}}},\"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[[{}]]}}}}",
            json_string(&n.code),
            json_string(n.name),
            json_string(city.municipality_code),
            json_string(city.municipality),
            n.population,
            n.households,
            n.area_ha,
            n.share_65_plus,
            coordinates.join(","),
        );
        out.push_str(if index + 1 < context.neighbourhoods.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("]}\n");
    out
}

fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}
