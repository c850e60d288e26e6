//! Weather and regional air pollution, hour by hour.
//!
//! Day-to-day regimes (temperature, wind, wetness, background PM) are drawn once for the whole
//! country, so the three cities see the same weather systems; each city adds its own climate
//! offsets and its own hourly showers and noise.

use rand::Rng;

use crate::calendar::Hour;
use crate::city::City;
use crate::rng;

/// Days of regime values: October plus 1 November (the last local hours) plus a spare for
/// interpolation.
const DAYS: usize = 33;

/// The weather in one city during one hour.
pub(crate) struct HourWeather {
    /// Air temperature (°C).
    pub temperature: f64,
    /// Relative humidity (%).
    pub humidity: f64,
    /// Wind speed (m/s).
    pub wind: f64,
    pub raining: bool,
    /// Regional background PM2.5 (µg/m³) before local sources are added.
    pub background_pm25: f64,
}

struct DayRegime {
    temperature: f64,
    wind: f64,
    /// Standard-normal wetness: above zero is a rainy regime.
    wetness: f64,
    background_pm25: f64,
}

fn regimes() -> Vec<DayRegime> {
    let mut rng = rng::seeded("nl/weather/2025-10");
    let wind_z = rng::ar1(&mut rng, DAYS, 0.6);
    let rain_z = rng::ar1(&mut rng, DAYS, 0.5);
    let pm_z = rng::ar1(&mut rng, DAYS, 0.7);
    let temperature_z = rng::ar1(&mut rng, DAYS, 0.8);
    (0..DAYS)
        .map(|day| {
            // Windy days tend to be wet (Atlantic lows); calm, dry days bring continental air
            // and stagnant conditions with high particulate levels.
            let wind = (5.2 + 2.3 * wind_z[day]).clamp(1.5, 12.5);
            let wetness = 0.5 * wind_z[day] + 0.87 * rain_z[day];
            let pm = -0.55 * wind_z[day] - 0.3 * rain_z[day] + 0.78 * pm_z[day];
            let background_pm25 =
                (5.0 * (0.5 * pm).exp() * (5.0 / wind).powf(0.35)).clamp(2.5, 40.0);
            DayRegime {
                // October cools from about 13.5 °C to about 9.5 °C daily mean.
                temperature: 13.6 - 4.2 * day as f64 / 31.0 + 1.5 * temperature_z[day],
                wind,
                wetness,
                background_pm25,
            }
        })
        .collect()
}

/// Linear interpolation of a regime value between day centres (local noon).
fn interpolate(days: &[DayRegime], hour: &Hour, value: impl Fn(&DayRegime) -> f64) -> f64 {
    let position = (hour.local_day as f64 + (hour.local_hour as f64 - 12.0) / 24.0)
        .clamp(0.0, (DAYS - 2) as f64);
    let index = position.floor() as usize;
    let fraction = position - index as f64;
    value(&days[index]) * (1.0 - fraction) + value(&days[index + 1]) * fraction
}

/// The weather of `city` for every hour in `hours`.
pub(crate) fn generate(city: &City, hours: &[Hour]) -> Vec<HourWeather> {
    let days = regimes();
    let mut rng = rng::seeded(&format!("{}/weather", city.name));
    let mut raining = false;
    let mut temperature_noise = 0.0;
    let mut humidity_noise = 0.0;
    hours
        .iter()
        .map(|hour| {
            let day = &days[hour.local_day.min(DAYS - 1)];
            let wetness = interpolate(&days, hour, |d| d.wetness);
            let rain_start = if day.wetness > 0.0 {
                0.06 + 0.12 * day.wetness.min(2.0)
            } else {
                0.01
            };
            raining = rng.random_bool(if raining { 0.65 } else { rain_start });

            let wind_daily = interpolate(&days, hour, |d| d.wind) * city.wind_factor;
            let afternoon = (std::f64::consts::TAU * (hour.local_hour as f64 - 14.0) / 24.0).cos();
            let wind =
                (wind_daily * (1.0 + 0.25 * afternoon) + 0.6 * rng::normal(&mut rng)).max(0.3);

            let amplitude = if day.wetness > 0.3 {
                1.6
            } else {
                (4.2 - 0.22 * wind_daily).clamp(1.5, 4.5)
            };
            let diurnal =
                amplitude * (std::f64::consts::TAU * (hour.local_hour as f64 - 15.0) / 24.0).cos();
            temperature_noise = 0.8 * temperature_noise + 0.35 * rng::normal(&mut rng);
            let temperature = interpolate(&days, hour, |d| d.temperature)
                + city.temperature_offset
                + diurnal
                + temperature_noise
                - if raining { 1.0 } else { 0.0 };

            // Relative humidity falls as the day warms; rain and calm clear nights (fog) push it
            // towards saturation.
            humidity_noise = 0.85 * humidity_noise + 1.5 * rng::normal(&mut rng);
            let fog = wind < 3.0 && hour.is_night() && !raining && day.wetness < 0.5;
            let humidity = (79.0 + 6.0 * wetness - 2.5 * diurnal
                + if raining { 9.0 } else { 0.0 }
                + if fog { 7.0 } else { 0.0 }
                + humidity_noise)
                .clamp(38.0, 99.9);

            let washout = if raining { 0.75 } else { 1.0 };
            let background_pm25 =
                interpolate(&days, hour, |d| d.background_pm25) * city.background_factor * washout;

            HourWeather {
                temperature,
                humidity,
                wind,
                raining,
                background_pm25,
            }
        })
        .collect()
}
