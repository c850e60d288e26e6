//! `air_quality.csv`: hourly readings of low-cost particulate-matter sensors, modelled on
//! sensor.community exports.
//!
//! A reading is the regional background (shared weather regimes) plus local traffic emissions
//! following the traffic profile, evening wood burning on cold days and, in Rotterdam, the port;
//! calm nights trap pollution. Optical sensors over-read in humid air, the SDS011 much more than
//! the SPS30, and every sensor has its own calibration bias and noise.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::DateTime;
use rand::Rng;

use crate::rng::{self, round_to, uniform};
use crate::traffic_counts::car_activity;
use crate::{Context, Error};

/// Sensors per city.
const SENSORS: usize = 20;

struct Sensor {
    id: i64,
    kind: &'static str,
    location_id: i64,
    lat: f64,
    lon: f64,
    neighbourhood: usize,
    /// Multiplicative calibration error.
    bias: f64,
    /// PM10 / PM2.5 ratio of the local aerosol.
    coarse_ratio: f64,
    /// The temperature and humidity sensor sits in a housing that runs warm or cool.
    temperature_bias: f64,
    humidity_bias: f64,
    /// Hours (first, end) the sensor reports nothing.
    outage: Option<(usize, usize)>,
}

/// The schema of [`crate::air_quality()`]; the CSV renders `timestamp` as `2025-10-01T00:00:00Z`
/// and missing PM values as empty fields.
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Int64, false),
        Field::new("sensor_type", DataType::Utf8, false),
        Field::new("location_id", DataType::Int64, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("pm10", DataType::Float64, true),
        Field::new("pm2_5", DataType::Float64, true),
        Field::new("temperature", DataType::Float64, false),
        Field::new("humidity", DataType::Float64, false),
        Field::new("neighbourhood_code", DataType::Utf8, false),
    ]))
}

struct Row {
    sensor: usize,
    hour: usize,
    pm10: Option<f64>,
    pm2_5: Option<f64>,
    temperature: f64,
    humidity: f64,
}

fn unique_ids(rng: &mut impl Rng, base: i64, count: usize) -> Vec<i64> {
    let mut ids = BTreeSet::new();
    while ids.len() < count {
        ids.insert(base + rng.random_range(0..9_000));
    }
    ids.into_iter().collect()
}

fn sensors(context: &Context, rng: &mut impl Rng) -> Vec<Sensor> {
    let (sensor_base, location_base, _) = context.city.id_base;
    let sensor_ids = unique_ids(rng, sensor_base, SENSORS);
    let location_ids = unique_ids(rng, location_base, SENSORS);
    // Every neighbourhood gets a sensor; a random few get a second one.
    let mut order: Vec<usize> = (0..context.neighbourhoods.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    sensor_ids
        .into_iter()
        .zip(location_ids)
        .enumerate()
        .map(|(index, (id, location_id))| {
            let neighbourhood = order[index % order.len()];
            let [lon, lat] = context.neighbourhoods[neighbourhood]
                .point_at(uniform(rng, 0.2, 0.8), uniform(rng, 0.2, 0.8));
            let outage = rng.random_bool(0.15).then(|| {
                let start = rng.random_range(0..context.hours.len());
                (start, start + rng.random_range(6..=30))
            });
            Sensor {
                id,
                kind: if rng.random_bool(0.25) {
                    "SPS30"
                } else {
                    "SDS011"
                },
                location_id,
                lat: round_to(lat, 4),
                lon: round_to(lon, 4),
                neighbourhood,
                bias: uniform(rng, 0.85, 1.2),
                coarse_ratio: uniform(rng, 1.2, 1.45),
                temperature_bias: uniform(rng, -0.4, 1.4),
                humidity_bias: uniform(rng, -4.0, 4.0),
                outage,
            }
        })
        .collect()
}

/// Growth of the optical PM reading in humid air (hygroscopic particles swell).
fn humidity_growth(kind: &str, humidity: f64) -> f64 {
    let k = if kind == "SDS011" { 0.07 } else { 0.02 };
    let rh = (humidity / 100.0).min(0.97);
    1.0 + k * rh * rh / (1.0 - rh)
}

/// The sensors of the city's `air_quality` table, as its register lists them.
pub(crate) fn registered(context: &Context) -> Vec<crate::SampleSensor> {
    let mut rng = rng::seeded(&format!("{}/air_quality", context.city.name));
    sensors(context, &mut rng)
        .into_iter()
        .map(|s| crate::SampleSensor {
            id: s.id,
            kind: s.kind,
            latitude: s.lat,
            longitude: s.lon,
            neighbourhood: context.neighbourhoods[s.neighbourhood].name.to_string(),
            municipality: context.city.municipality,
        })
        .collect()
}

fn rows(context: &Context) -> (Vec<Sensor>, Vec<Row>) {
    let mut rng = rng::seeded(&format!("{}/air_quality", context.city.name));
    let sensors = sensors(context, &mut rng);
    let mut noise = vec![(0.0, 0.0); sensors.len()];
    let mut rows = Vec::with_capacity(sensors.len() * context.hours.len());
    for (index, (hour, weather)) in context.hours.iter().zip(&context.weather).enumerate() {
        let traffic = car_activity(hour);
        let calm_night = if hour.is_night() && weather.wind < 3.5 {
            1.0 + 0.5 * (3.5 - weather.wind) / 3.5
        } else {
            1.0
        };
        let dilution = (4.0 / weather.wind).powf(0.6).clamp(0.4, 2.5) * calm_night;
        let wood = if (17..=23).contains(&hour.local_hour) && weather.temperature < 12.0 {
            1.5 * (12.0 - weather.temperature) / 4.0
        } else {
            0.0
        };
        for (sensor_index, sensor) in sensors.iter().enumerate() {
            let place = &context.neighbourhoods[sensor.neighbourhood];
            let pm2_5_true = weather.background_pm25
                + place.traffic * 4.0 * traffic * dilution
                + wood * place.residential * dilution
                + place.port * 3.5 * dilution.sqrt();
            // Coarse dust: sea salt and soil on windy days, road dust stirred up by traffic
            // unless the road is wet.
            let coarse = 0.8
                + 0.3 * weather.wind
                + 1.5 * place.traffic * traffic * if weather.raining { 0.4 } else { 1.0 };

            let (noise_2_5, noise_10) = &mut noise[sensor_index];
            *noise_2_5 = 0.6 * *noise_2_5 + 0.08 * rng::normal(&mut rng);
            *noise_10 = 0.6 * *noise_10 + 0.08 * rng::normal(&mut rng);
            let temperature =
                weather.temperature + sensor.temperature_bias + 0.25 * rng::normal(&mut rng);
            let humidity = (weather.humidity + sensor.humidity_bias + 1.2 * rng::normal(&mut rng))
                .clamp(15.0, 99.9);

            let growth = humidity_growth(sensor.kind, humidity);
            let pm2_5 = pm2_5_true * growth * sensor.bias * noise_2_5.exp();
            let pm10 = (pm2_5_true * sensor.coarse_ratio + coarse)
                * (1.0 + 0.85 * (growth - 1.0))
                * sensor.bias
                * noise_10.exp();
            let pm2_5 = round_to(pm2_5.clamp(0.2, 999.8), 1);
            let pm10 = round_to(pm10.clamp(0.3, 999.9), 1).max(round_to(pm2_5 + 0.1, 1));

            let offline = sensor
                .outage
                .is_some_and(|(start, end)| (start..end).contains(&index));
            let missing = offline || rng.random_bool(0.003);
            rows.push(Row {
                sensor: sensor_index,
                hour: index,
                pm10: (!missing).then_some(pm10),
                pm2_5: (!missing).then_some(pm2_5),
                temperature: round_to(temperature, 1),
                humidity: round_to(humidity, 1),
            });
        }
    }
    (sensors, rows)
}

pub(crate) fn to_batch(context: &Context) -> Result<RecordBatch, Error> {
    let (sensors, rows) = rows(context);
    let sensor = |row: &Row| &sensors[row.sensor];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| sensor(r).id),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| sensor(r).kind),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| sensor(r).location_id),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| sensor(r).lat),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| sensor(r).lon),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| context.hours[r.hour].micros),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(rows.iter().map(|r| r.pm10).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.pm2_5).collect::<Float64Array>()),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.temperature),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.humidity),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
            context.neighbourhoods[sensor(r).neighbourhood]
                .code
                .as_str()
        }))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The table as comma-separated values with a header line.
pub(crate) fn to_csv(batch: &RecordBatch) -> Vec<u8> {
    let int = |index: usize| {
        batch
            .column(index)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("schema")
    };
    let float = |index: usize| {
        batch
            .column(index)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("schema")
    };
    let string = |index: usize| {
        batch
            .column(index)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("schema")
    };
    let (sensor_id, sensor_type, location_id) = (int(0), string(1), int(2));
    let (lat, lon) = (float(3), float(4));
    let timestamp = batch
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("schema");
    let (pm10, pm2_5, temperature, humidity) = (float(6), float(7), float(8), float(9));
    let neighbourhood_code = string(10);

    let optional = |array: &Float64Array, row: usize| {
        if array.is_valid(row) {
            format!("{:.1}", array.value(row))
        } else {
            String::new()
        }
    };
    let mut out = String::with_capacity(110 * batch.num_rows());
    out.push_str(
        "sensor_id,sensor_type,location_id,lat,lon,timestamp,pm10,pm2_5,temperature,humidity,neighbourhood_code\n",
    );
    for row in 0..batch.num_rows() {
        let time = DateTime::from_timestamp_micros(timestamp.value(row))
            .expect("October 2025 is representable");
        // writing to a String cannot fail
        let _ = writeln!(
            out,
            "{},{},{},{:.4},{:.4},{},{},{},{:.1},{:.1},{}",
            sensor_id.value(row),
            sensor_type.value(row),
            location_id.value(row),
            lat.value(row),
            lon.value(row),
            time.format("%Y-%m-%dT%H:%M:%SZ"),
            optional(pm10, row),
            optional(pm2_5, row),
            temperature.value(row),
            humidity.value(row),
            neighbourhood_code.value(row),
        );
    }
    out.into_bytes()
}
