#![doc = include_str!("../README.md")]

mod air_quality;
mod calendar;
mod city;
mod error;
mod neighbourhoods;
mod rng;
mod traffic_counts;
mod weather;

use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

pub use error::Error;

use calendar::Hour;
use city::City;
use neighbourhoods::Neighbourhood;
use weather::HourWeather;

/// The sample cities, by the lower-case name every function of this crate takes.
pub const CITIES: &[&str] = &["amsterdam", "utrecht", "rotterdam"];

/// Whether `name` is one of [`CITIES`] (exact, lower case).
pub fn is_city(name: &str) -> bool {
    CITIES.contains(&name)
}

/// A file written by [`write_city`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleTable {
    /// Table name, which is also the file stem: `air_quality`, `traffic_counts` or
    /// `neighbourhoods`.
    pub name: &'static str,
    /// Where the file was written.
    pub path: PathBuf,
    /// File format: `csv`, `parquet` or `geojson`.
    pub format: &'static str,
    /// One-line description for catalogs.
    pub description: &'static str,
}

const AIR_QUALITY: (&str, &str, &str) = (
    "air_quality",
    "csv",
    "Hourly PM10, PM2.5, temperature and humidity from about 20 low-cost sensors, October 2025 \
     (synthetic, modelled on sensor.community)",
);
const TRAFFIC_COUNTS: (&str, &str, &str) = (
    "traffic_counts",
    "parquet",
    "Hourly counts of cars, bikes, pedestrians and heavy vehicles on 12 street segments, \
     October 2025 (synthetic, modelled on Telraam)",
);
const NEIGHBOURHOODS: (&str, &str, &str) = (
    "neighbourhoods",
    "geojson",
    "Neighbourhood polygons with population, households, area and share of residents aged 65+ \
     (synthetic, modelled on CBS Wijken en Buurten)",
);

/// Everything the tables of one city are generated from.
pub(crate) struct Context {
    pub city: &'static City,
    pub hours: Vec<Hour>,
    pub weather: Vec<HourWeather>,
    pub neighbourhoods: Vec<Neighbourhood>,
}

impl Context {
    fn new(city: &str) -> Result<Self, Error> {
        let city = City::lookup(city)?;
        let hours = calendar::hours();
        let weather = weather::generate(city, &hours);
        Ok(Self {
            city,
            hours,
            weather,
            neighbourhoods: neighbourhoods::generate(city),
        })
    }
}

/// Writes the three tables of `city` into `dir` (created if missing) and describes them.
///
/// Files are named `air_quality.csv`, `traffic_counts.parquet` and `neighbourhoods.geojson`;
/// existing files are replaced. The bytes are the same on every run.
pub fn write_city(city: &str, dir: &Path) -> Result<Vec<SampleTable>, Error> {
    let context = Context::new(city)?;
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let air_quality = air_quality::to_csv(&air_quality::to_batch(&context)?);
    let traffic_counts = traffic_counts::to_parquet(&traffic_counts::to_batch(&context)?)?;
    let neighbourhoods = neighbourhoods::to_geojson(&context).into_bytes();
    [
        (AIR_QUALITY, air_quality),
        (TRAFFIC_COUNTS, traffic_counts),
        (NEIGHBOURHOODS, neighbourhoods),
    ]
    .into_iter()
    .map(|((name, format, description), bytes)| {
        let path = dir.join(format!("{name}.{format}"));
        write_file(&path, &bytes)?;
        Ok(SampleTable {
            name,
            path,
            format,
            description,
        })
    })
    .collect()
}

/// Writes every city of [`CITIES`] into `dir/<city>/`.
pub fn write_all(dir: &Path) -> Result<Vec<(String, Vec<SampleTable>)>, Error> {
    CITIES
        .iter()
        .map(|city| Ok((city.to_string(), write_city(city, &dir.join(city))?)))
        .collect()
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes)
        .and_then(|()| fs::rename(&temporary, path))
        .map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
}

/// A sensor of the sample `air_quality` table, for the sample node's sensor register.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSensor {
    /// Its `sensor_id` in `air_quality`.
    pub id: i64,
    /// Sensor model (`SDS011`, `SPS30`).
    pub kind: &'static str,
    /// WGS84 latitude, as in `air_quality`.
    pub latitude: f64,
    /// WGS84 longitude, as in `air_quality`.
    pub longitude: f64,
    /// Name of the neighbourhood it stands in.
    pub neighbourhood: String,
    /// The municipality, as CBS writes it.
    pub municipality: &'static str,
}

/// The sensors of `city`'s `air_quality` table.
pub fn sensors(city: &str) -> Result<Vec<SampleSensor>, Error> {
    Ok(air_quality::registered(&Context::new(city)?))
}

/// The `air_quality` table of `city`, exactly the rows of `air_quality.csv`.
pub fn air_quality(city: &str) -> Result<RecordBatch, Error> {
    air_quality::to_batch(&Context::new(city)?)
}

/// The schema of [`air_quality()`], also the one to read `air_quality.csv` with.
pub fn air_quality_schema() -> SchemaRef {
    air_quality::schema()
}

/// The `traffic_counts` table of `city`, exactly the rows of `traffic_counts.parquet`.
pub fn traffic_counts(city: &str) -> Result<RecordBatch, Error> {
    traffic_counts::to_batch(&Context::new(city)?)
}

/// The schema of [`traffic_counts()`] and of `traffic_counts.parquet`.
pub fn traffic_counts_schema() -> SchemaRef {
    traffic_counts::schema()
}

/// The `neighbourhoods` table of `city`: the properties of `neighbourhoods.geojson` plus the
/// polygon as WKB in `geometry`.
pub fn neighbourhoods(city: &str) -> Result<RecordBatch, Error> {
    neighbourhoods::to_batch(&Context::new(city)?)
}

/// The schema of [`neighbourhoods()`].
pub fn neighbourhoods_schema() -> SchemaRef {
    neighbourhoods::schema()
}
