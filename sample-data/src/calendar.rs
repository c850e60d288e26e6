//! The 744 hours of October 2025 and what a city does in each of them.

use chrono::{DateTime, Datelike, Timelike, Weekday};

/// Number of hourly steps: the 31 days of October 2025.
pub(crate) const HOURS: usize = 31 * 24;

/// 2025-10-01T00:00:00Z in seconds since the Unix epoch.
const START_SECONDS: i64 = 1_759_276_800;

/// Daylight-saving time ends at 2025-10-26T01:00:00Z: local time goes from UTC+2 to UTC+1.
const DST_END_HOUR: usize = 25 * 24 + 1;

/// Kind of day, which sets the shape and volume of traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DayType {
    Weekday,
    Saturday,
    Sunday,
}

/// One hour of the sample period.
pub(crate) struct Hour {
    /// Start of the hour, microseconds since the Unix epoch (UTC).
    pub micros: i64,
    /// Hour of day in Dutch local time (CEST, then CET from 26 October).
    pub local_hour: usize,
    /// Local calendar day counted from 1 October (0-based; 31 is 1 November).
    pub local_day: usize,
    pub day_type: DayType,
    /// The autumn school holiday (18 to 26 October 2025 in the north and middle regions).
    pub school_holiday: bool,
    /// The sun is down for most of the hour.
    pub dark: bool,
}

impl Hour {
    pub(crate) fn is_night(&self) -> bool {
        self.local_hour < 7 || self.local_hour >= 21
    }
}

/// The sample period, hour by hour.
pub(crate) fn hours() -> Vec<Hour> {
    (0..HOURS)
        .map(|index| {
            let utc_seconds = START_SECONDS + 3600 * index as i64;
            let offset_hours = if index < DST_END_HOUR { 2 } else { 1 };
            let local = DateTime::from_timestamp(utc_seconds + 3600 * offset_hours, 0)
                .expect("October 2025 is representable")
                .naive_utc();
            let local_day = ((utc_seconds + 3600 * offset_hours - START_SECONDS) / 86_400) as usize;
            let day_type = match local.weekday() {
                Weekday::Sat => DayType::Saturday,
                Weekday::Sun => DayType::Sunday,
                _ => DayType::Weekday,
            };
            // Sunrise and sunset at 52° N move from about 05:40 and 17:15 UTC on 1 October to
            // 06:30 and 16:05 UTC on 31 October.
            let utc_day = (index / 24) as f64;
            let sunrise = 5.7 + 0.8 * utc_day / 30.0;
            let sunset = 17.25 - 1.15 * utc_day / 30.0;
            let middle = (index % 24) as f64 + 0.5;
            Hour {
                micros: utc_seconds * 1_000_000,
                local_hour: local.hour() as usize,
                local_day,
                day_type,
                school_holiday: local.month() == 10 && (18..=26).contains(&local.day()),
                dark: middle < sunrise || middle > sunset,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_october_2025() {
        let hours = hours();
        assert_eq!(hours.len(), 744);
        let first = DateTime::from_timestamp_micros(hours[0].micros).unwrap();
        assert_eq!(first.to_rfc3339(), "2025-10-01T00:00:00+00:00");
        // 1 October 2025 was a Wednesday, 00:00 UTC is 02:00 CEST.
        assert_eq!(hours[0].local_hour, 2);
        assert!(hours[0].day_type == DayType::Weekday);
        // After the switch to winter time 01:00 UTC is 02:00 CET.
        assert_eq!(hours[DST_END_HOUR].local_hour, 2);
        assert_eq!(hours[DST_END_HOUR - 1].local_hour, 2);
        assert!(hours[DST_END_HOUR].day_type == DayType::Sunday);
        assert_eq!(hours[743].local_day, 31);
    }
}
