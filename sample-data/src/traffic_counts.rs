//! `traffic_counts.parquet`: hourly counts per street segment, modelled on Telraam.
//!
//! Each neighbourhood has one counted segment. A segment is an arterial road, a residential
//! street, a bicycle street (fietsstraat) or a shopping street, which sets its daily volumes per
//! mode; hourly counts follow weekday, Saturday and Sunday profiles in local time, thin out in
//! the school holiday and respond to rain, cold and wind.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::Rng;

use crate::calendar::{DayType, Hour};
use crate::rng::{self, round_to, uniform};
use crate::{Context, Error};

/// Counted modes, in column order.
const CAR: usize = 0;
const BIKE: usize = 1;
const PEDESTRIAN: usize = 2;
const HEAVY: usize = 3;

/// Share of a day's traffic per local hour 0 to 23 (relative weights), per mode and day type
/// (weekday, Saturday, Sunday).
#[rustfmt::skip]
const PROFILES: [[[f64; 24]; 3]; 4] = [
    // car: commuter peaks on weekdays, a broad afternoon hump at weekends
    [
        [0.9, 0.5, 0.35, 0.35, 0.6, 1.6, 3.9, 7.2, 8.0, 6.0, 5.2, 5.3, 5.5, 5.5, 5.8, 6.6, 7.7, 8.1, 6.5, 4.8, 3.7, 3.0, 2.3, 1.5],
        [1.6, 1.0, 0.7, 0.5, 0.5, 0.8, 1.6, 2.8, 4.2, 5.6, 6.6, 7.2, 7.4, 7.4, 7.3, 7.1, 6.9, 6.5, 5.6, 4.6, 3.8, 3.3, 2.9, 2.3],
        [2.0, 1.3, 0.9, 0.6, 0.5, 0.6, 1.0, 1.7, 2.6, 3.8, 5.2, 6.4, 7.3, 7.7, 7.8, 7.8, 7.6, 7.2, 6.4, 5.3, 4.3, 3.5, 2.6, 1.6],
    ],
    // bike: sharper commuter and school peaks
    [
        [0.5, 0.25, 0.15, 0.1, 0.2, 0.7, 3.2, 9.3, 10.2, 5.4, 4.0, 4.4, 5.4, 5.2, 5.5, 6.9, 8.6, 9.4, 6.2, 4.1, 3.0, 2.5, 1.9, 1.1],
        [1.3, 0.8, 0.5, 0.3, 0.2, 0.3, 0.8, 2.0, 3.6, 5.4, 6.9, 7.8, 8.2, 8.3, 8.2, 7.9, 7.4, 6.6, 5.2, 3.9, 3.2, 2.8, 2.4, 1.8],
        [1.6, 1.0, 0.6, 0.3, 0.2, 0.2, 0.5, 1.0, 2.0, 3.6, 5.6, 7.4, 8.6, 9.1, 9.2, 9.0, 8.2, 6.9, 5.3, 3.8, 2.9, 2.3, 1.7, 1.0],
    ],
    // pedestrian: lunch and shopping hours
    [
        [0.6, 0.3, 0.2, 0.1, 0.1, 0.3, 1.3, 3.6, 5.2, 4.6, 5.0, 6.2, 7.6, 7.6, 7.2, 7.2, 7.6, 7.8, 6.6, 5.0, 4.0, 3.4, 2.6, 1.6],
        [1.4, 0.9, 0.5, 0.3, 0.2, 0.2, 0.4, 1.0, 2.2, 4.0, 6.0, 7.6, 8.6, 9.0, 9.0, 8.8, 8.2, 7.0, 5.4, 4.0, 3.2, 2.9, 2.5, 1.9],
        [1.6, 1.0, 0.6, 0.3, 0.2, 0.2, 0.3, 0.6, 1.4, 2.8, 4.8, 7.0, 8.8, 9.6, 9.8, 9.6, 8.8, 7.2, 5.4, 3.8, 2.8, 2.2, 1.6, 1.0],
    ],
    // heavy: deliveries early in the day
    [
        [0.8, 0.6, 0.6, 0.8, 1.6, 3.4, 5.6, 7.2, 7.8, 7.6, 7.4, 7.2, 7.0, 6.8, 6.6, 6.2, 5.4, 4.4, 3.2, 2.4, 1.8, 1.4, 1.2, 1.0],
        [1.4, 1.0, 0.9, 0.9, 1.2, 2.0, 3.2, 4.8, 6.4, 7.6, 8.2, 8.4, 8.2, 7.8, 7.0, 6.0, 5.0, 4.0, 3.2, 2.6, 2.0, 1.8, 1.6, 1.4],
        [1.8, 1.4, 1.2, 1.1, 1.2, 1.6, 2.4, 3.4, 4.6, 5.8, 6.8, 7.4, 7.6, 7.6, 7.2, 6.6, 5.8, 4.8, 4.0, 3.4, 2.8, 2.4, 2.1, 1.9],
    ],
];

/// Daily volume on Saturday and Sunday relative to a weekday, per mode.
const WEEKEND_FACTORS: [[f64; 2]; 4] = [[0.85, 0.7], [0.8, 0.72], [1.15, 0.9], [0.45, 0.25]];

/// Daily volume on weekdays of the school holiday, per mode.
const HOLIDAY_FACTORS: [f64; 4] = [0.93, 0.85, 1.0, 1.0];

fn day_index(day_type: DayType) -> usize {
    match day_type {
        DayType::Weekday => 0,
        DayType::Saturday => 1,
        DayType::Sunday => 2,
    }
}

/// Expected share of a weekday's volume of `mode` that passes during `hour`, before weather.
fn expected_share(mode: usize, hour: &Hour) -> f64 {
    let day = day_index(hour.day_type);
    let profile = &PROFILES[mode][day];
    let share = profile[hour.local_hour] / profile.iter().sum::<f64>();
    let day_factor = match hour.day_type {
        DayType::Weekday if hour.school_holiday => HOLIDAY_FACTORS[mode],
        DayType::Weekday => 1.0,
        DayType::Saturday => WEEKEND_FACTORS[mode][0],
        DayType::Sunday => WEEKEND_FACTORS[mode][1],
    };
    share * day_factor
}

/// Motor traffic during `hour` relative to the weekday hourly average (1.0); the air-quality
/// generator uses it for traffic emissions.
pub(crate) fn car_activity(hour: &Hour) -> f64 {
    expected_share(CAR, hour) * 24.0
}

#[derive(Clone, Copy)]
enum RoadKind {
    Arterial,
    Residential,
    BicycleStreet,
    ShoppingStreet,
}

struct Segment {
    id: i64,
    neighbourhood: usize,
    /// Weekday daily volumes: car, bike, pedestrian, heavy.
    daily: [f64; 4],
    /// v85 without congestion (km/h).
    free_speed: f64,
    /// How much v85 drops in the busiest hour (fraction); only arterials really congest.
    congestion: f64,
    /// Hours left in the current outage.
    outage: usize,
}

/// The schema of [`crate::traffic_counts()`].
pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment_id", DataType::Int64, false),
        Field::new(
            "hour",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("car", DataType::Int64, false),
        Field::new("bike", DataType::Int64, false),
        Field::new("pedestrian", DataType::Int64, false),
        Field::new("heavy", DataType::Int64, false),
        Field::new("uptime", DataType::Float64, false),
        Field::new("v85", DataType::Float64, true),
        Field::new("neighbourhood_code", DataType::Utf8, false),
    ]))
}

struct Row {
    segment: usize,
    hour: usize,
    counts: [i64; 4],
    uptime: f64,
    v85: Option<f64>,
}

fn segments(context: &Context, rng: &mut impl Rng) -> Vec<Segment> {
    let city = context.city;
    let count = context.neighbourhoods.len();
    let mut ids = BTreeSet::new();
    while ids.len() < count {
        ids.insert(city.id_base.2 + rng.random_range(0..90_000));
    }
    let mut kinds = [
        RoadKind::Arterial,
        RoadKind::Arterial,
        RoadKind::Arterial,
        RoadKind::Arterial,
        RoadKind::Residential,
        RoadKind::Residential,
        RoadKind::Residential,
        RoadKind::BicycleStreet,
        RoadKind::BicycleStreet,
        RoadKind::ShoppingStreet,
        RoadKind::ShoppingStreet,
        RoadKind::ShoppingStreet,
    ];
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.random_range(0..=i));
    }
    ids.into_iter()
        .enumerate()
        .map(|(index, id)| {
            let neighbourhood = &context.neighbourhoods[index];
            let kind = kinds[index % kinds.len()];
            let (car, bike, pedestrian, heavy_share, free_speed, congestion) = match kind {
                RoadKind::Arterial => (
                    uniform(rng, 6000.0, 11_000.0),
                    uniform(rng, 1500.0, 3000.0),
                    uniform(rng, 300.0, 900.0),
                    uniform(rng, 0.04, 0.07),
                    city.arterial_limit + uniform(rng, 6.0, 12.0),
                    0.28,
                ),
                RoadKind::Residential => (
                    uniform(rng, 400.0, 1500.0),
                    uniform(rng, 600.0, 1800.0),
                    uniform(rng, 300.0, 1200.0),
                    uniform(rng, 0.01, 0.02),
                    uniform(rng, 34.0, 40.0),
                    0.06,
                ),
                RoadKind::BicycleStreet => (
                    uniform(rng, 200.0, 700.0),
                    uniform(rng, 3000.0, 7000.0),
                    uniform(rng, 400.0, 1000.0),
                    uniform(rng, 0.005, 0.01),
                    uniform(rng, 27.0, 32.0),
                    0.05,
                ),
                RoadKind::ShoppingStreet => (
                    uniform(rng, 300.0, 1200.0),
                    uniform(rng, 1500.0, 4000.0),
                    uniform(rng, 3000.0, 9000.0),
                    uniform(rng, 0.015, 0.03),
                    uniform(rng, 25.0, 31.0),
                    0.1,
                ),
            };
            let [car_factor, bike_factor, pedestrian_factor, heavy_factor] = city.modal;
            let car = car * (0.7 + 0.3 * neighbourhood.traffic);
            Segment {
                id,
                neighbourhood: index,
                daily: [
                    car * car_factor,
                    bike * bike_factor,
                    pedestrian * pedestrian_factor,
                    car * heavy_share * heavy_factor * (1.0 + 2.0 * neighbourhood.port),
                ],
                free_speed,
                congestion,
                outage: 0,
            }
        })
        .collect()
}

fn rows(context: &Context) -> (Vec<Segment>, Vec<Row>) {
    let mut rng = rng::seeded(&format!("{}/traffic_counts", context.city.name));
    let mut segments = segments(context, &mut rng);
    let mut rows = Vec::with_capacity(segments.len() * context.hours.len());
    for (index, (hour, weather)) in context.hours.iter().zip(&context.weather).enumerate() {
        let mut weather_factors = [1.0; 4];
        if weather.raining {
            weather_factors[CAR] *= 1.05;
            weather_factors[BIKE] *= 0.7;
            weather_factors[PEDESTRIAN] *= 0.65;
        }
        if weather.temperature < 8.0 {
            weather_factors[BIKE] *= 0.9;
        }
        if weather.wind > 9.0 {
            weather_factors[BIKE] *= 0.88;
        }
        for (segment_index, segment) in segments.iter_mut().enumerate() {
            if segment.outage == 0 && rng.random_bool(0.003) {
                segment.outage = rng.random_range(1..=10);
            }
            let uptime = if segment.outage > 0 {
                segment.outage -= 1;
                0.0
            } else if hour.dark {
                round_to(uniform(&mut rng, 0.62, 0.9), 4)
            } else {
                round_to(uniform(&mut rng, 0.86, 0.995), 4)
            };
            let mut expected = [0.0; 4];
            let mut counts = [0; 4];
            for mode in [CAR, BIKE, PEDESTRIAN, HEAVY] {
                expected[mode] =
                    segment.daily[mode] * expected_share(mode, hour) * weather_factors[mode];
                counts[mode] = rng::poisson(&mut rng, expected[mode] * uptime);
            }
            // Telraam reports the 85th percentile car speed when enough cars were seen; busy
            // hours slow traffic down.
            let busiest =
                segment.daily[CAR] * PROFILES[CAR][0][8] / PROFILES[CAR][0].iter().sum::<f64>();
            let load = (expected[CAR] / busiest).min(1.2);
            let noise = 1.8 * rng::normal(&mut rng);
            let v85 = (counts[CAR] >= 10).then(|| {
                let rain = if weather.raining { 2.0 } else { 0.0 };
                round_to(
                    (segment.free_speed * (1.0 - segment.congestion * load * load) - rain + noise)
                        .max(12.0),
                    1,
                )
            });
            rows.push(Row {
                segment: segment_index,
                hour: index,
                counts,
                uptime,
                v85,
            });
        }
    }
    (segments, rows)
}

pub(crate) fn to_batch(context: &Context) -> Result<RecordBatch, Error> {
    let (segments, rows) = rows(context);
    let count = |mode: usize| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.counts[mode]),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| segments[r.segment].id),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| context.hours[r.hour].micros),
            )
            .with_timezone("UTC"),
        ),
        count(CAR),
        count(BIKE),
        count(PEDESTRIAN),
        count(HEAVY),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.uptime),
        )),
        Arc::new(rows.iter().map(|r| r.v85).collect::<Float64Array>()),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
            context.neighbourhoods[segments[r.segment].neighbourhood]
                .code
                .as_str()
        }))),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The table as a zstd-compressed Parquet file (one row group, sorted by hour then segment).
pub(crate) fn to_parquet(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(bytes)
}
