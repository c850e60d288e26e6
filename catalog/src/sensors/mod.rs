//! The public sensor register: the sensors a node operates in public space, what they measure,
//! who owns them, why, on which legal basis, whether they process personal data, how long the
//! data is kept and where to ask, as the Dutch cities' "communicatierichtlijn sensoren" asks
//! every sensor to show.
//!
//! [`SensorConfig`] is one `[[sensors]]` entry as written; [`Register::resolve`] checks them all
//! at startup and names every sensor with a missing owner, purpose, legal basis or other
//! required field ([`RegisterError`]). The register is then
//! - described in the catalog with SOSA/SSN and GeoSPARQL ([`rdf`]), validated by
//!   `ontology/udn-shapes.ttl`;
//! - served to residents as `GET /sensors`, plain HTML in Dutch and English with a map drawn
//!   by the node itself ([`page`]);
//! - written as GeoJSON ([`Register::to_geojson`]) for the node's `sensor_register` SQL table.

pub mod page;
pub mod rdf;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::ContactConfig;
use crate::metadata::Contact;

/// Name of the SQL table of the register.
pub const TABLE: &str = "sensor_register";

/// A text in one language, or in several by language code (`{ nl = "...", en = "..." }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Text {
    /// The same text whatever the reader's language.
    Plain(String),
    /// The text per language code (`nl`, `en`).
    ByLanguage(BTreeMap<String, String>),
}

impl Text {
    /// The text for a reader of `language`: that language, else English, else Dutch, else the
    /// first given.
    pub fn get(&self, language: &str) -> &str {
        match self {
            Self::Plain(text) => text,
            Self::ByLanguage(texts) => [language, "en", "nl"]
                .iter()
                .find_map(|l| texts.get(*l))
                .or_else(|| texts.values().next())
                .map_or("", String::as_str),
        }
    }

    /// Each language's text (`None`: the language is not stated).
    pub fn variants(&self) -> Vec<(Option<&str>, &str)> {
        match self {
            Self::Plain(text) => vec![(None, text.as_str())],
            Self::ByLanguage(texts) => texts
                .iter()
                .map(|(l, t)| (Some(l.as_str()), t.as_str()))
                .collect(),
        }
    }

    fn is_blank(&self) -> bool {
        match self {
            Self::Plain(text) => text.trim().is_empty(),
            Self::ByLanguage(texts) => texts.values().all(|t| t.trim().is_empty()),
        }
    }

    fn language_problem(&self) -> Option<String> {
        match self {
            Self::Plain(_) => None,
            Self::ByLanguage(texts) => texts
                .keys()
                .find(|l| l.is_empty() || l.len() > 8 || !l.chars().all(|c| c.is_ascii_lowercase()))
                .map(|l| format!("'{l}' is not a language code (write nl, en, ...)")),
        }
    }
}

/// One sensor of the register, as written in the node's config (`[[sensors]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Identifier, unique in the node: lowercase letters, digits, `-` and `_`. It is the last
    /// segment of the sensor's IRI (`<base>/sensor/<id>`).
    pub id: Option<String>,
    /// Name residents know it by (default: the id).
    pub name: Option<Text>,
    /// What kind of device it is ("air quality sensor", "counting camera").
    pub kind: Option<Text>,
    /// Position, WGS84 degrees.
    pub latitude: Option<f64>,
    /// Position, WGS84 degrees.
    pub longitude: Option<f64>,
    /// The neighbourhood it stands in; the page lists sensors per neighbourhood.
    pub neighbourhood: Option<String>,
    /// What it measures ("PM2.5", "PM10", "cyclists per hour").
    #[serde(default)]
    pub observes: Vec<String>,
    /// The organisation that owns it and is responsible for it.
    pub owner: Option<String>,
    /// Why it measures.
    pub purpose: Option<Text>,
    /// The legal basis of the measurement (for personal data, the GDPR article 6 basis).
    pub legal_basis: Option<Text>,
    /// Whether it processes personal data (images, device identifiers, ...). Must be stated.
    pub personal_data: Option<bool>,
    /// How long its data is kept ("5 years", "raw images are not stored").
    pub retention: Option<Text>,
    /// Where residents ask about it.
    pub contact: Option<ContactConfig>,
    /// The node's table its measurements feed, if any.
    pub dataset: Option<String>,
}

/// A checked sensor of the register.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Identifier.
    pub id: String,
    /// Name (the id when none is configured).
    pub name: Text,
    /// Kind of device.
    pub kind: Option<Text>,
    /// WGS84 latitude.
    pub latitude: f64,
    /// WGS84 longitude.
    pub longitude: f64,
    /// Neighbourhood.
    pub neighbourhood: Option<String>,
    /// Observed properties.
    pub observes: Vec<String>,
    /// Owner.
    pub owner: String,
    /// Purpose.
    pub purpose: Text,
    /// Legal basis.
    pub legal_basis: Text,
    /// Whether it processes personal data.
    pub personal_data: bool,
    /// Retention.
    pub retention: Option<Text>,
    /// Where to ask: a name and an e-mail address or web page.
    pub contact: Contact,
    /// The table its measurements feed.
    pub dataset: Option<String>,
}

/// The checked register of a node, in configuration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Register {
    /// The sensors.
    pub sensors: Vec<Sensor>,
}

/// What is wrong with the sensor register; every problem of every sensor is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the sensor register is incomplete: {} (docs/config-reference.md, [[sensors]], lists every key)",
    problems.join("; ")
)]
pub struct RegisterError {
    /// One entry per sensor at fault: `sensor 'id': missing owner, purpose`.
    pub problems: Vec<String>,
}

impl Register {
    /// Checks every entry: required fields present and not blank, positions in range, ids
    /// valid and unique, datasets among the node's `tables`.
    pub fn resolve(configs: &[SensorConfig], tables: &[String]) -> Result<Self, RegisterError> {
        let mut problems = Vec::new();
        let mut sensors = Vec::with_capacity(configs.len());
        let mut seen = BTreeSet::new();
        for (index, config) in configs.iter().enumerate() {
            let label = match &config.id {
                Some(id) => format!("sensor '{id}'"),
                None => format!("sensor number {}", index + 1),
            };
            let mut missing = Vec::new();
            let mut invalid = Vec::new();
            let text =
                |value: &Option<Text>, key: &'static str, missing: &mut Vec<&str>| match value {
                    Some(t) if !t.is_blank() => Some(t.clone()),
                    _ => {
                        missing.push(key);
                        None
                    }
                };
            let id = match config.id.as_deref().map(str::trim) {
                Some(id) if valid_id(id) => {
                    if !seen.insert(id.to_string()) {
                        invalid.push(format!("the id '{id}' is used twice"));
                    }
                    Some(id.to_string())
                }
                Some(id) => {
                    invalid.push(format!(
                        "the id '{id}' must be lowercase letters, digits, '-' and '_' (at most 64)"
                    ));
                    None
                }
                None => {
                    missing.push("id");
                    None
                }
            };
            let owner = match config.owner.as_deref().map(str::trim) {
                Some(owner) if !owner.is_empty() => Some(owner.to_string()),
                _ => {
                    missing.push("owner");
                    None
                }
            };
            let purpose = text(&config.purpose, "purpose", &mut missing);
            let legal_basis = text(&config.legal_basis, "legal_basis", &mut missing);
            if config.personal_data.is_none() {
                missing.push("personal_data");
            }
            let latitude = coordinate(
                config.latitude,
                "latitude",
                90.0,
                &mut missing,
                &mut invalid,
            );
            let longitude = coordinate(
                config.longitude,
                "longitude",
                180.0,
                &mut missing,
                &mut invalid,
            );
            let observes: Vec<String> = config
                .observes
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
            if observes.is_empty() {
                missing.push("observes");
            }
            let contact = match &config.contact {
                Some(c) if c.email.is_some() || c.url.is_some() => Some(Contact {
                    name: c.name.clone().or_else(|| owner.clone()).unwrap_or_default(),
                    email: c.email.clone(),
                    url: c.url.clone(),
                }),
                _ => {
                    missing.push("contact (an email or url)");
                    None
                }
            };
            if let Some(dataset) = &config.dataset
                && !tables.contains(dataset)
            {
                invalid.push(format!("dataset '{dataset}' is not a table of this node"));
            }
            for (key, value) in [
                ("name", &config.name),
                ("kind", &config.kind),
                ("purpose", &config.purpose),
                ("legal_basis", &config.legal_basis),
                ("retention", &config.retention),
            ] {
                if let Some(problem) = value.as_ref().and_then(Text::language_problem) {
                    invalid.push(format!("{key}: {problem}"));
                }
            }
            if !missing.is_empty() {
                invalid.insert(0, format!("missing {}", missing.join(", ")));
            }
            if !invalid.is_empty() {
                problems.push(format!("{label}: {}", invalid.join(", ")));
                continue;
            }
            let id = id.expect("checked above");
            sensors.push(Sensor {
                name: config.name.clone().unwrap_or(Text::Plain(id.clone())),
                id,
                kind: config.kind.clone(),
                latitude: latitude.expect("checked above"),
                longitude: longitude.expect("checked above"),
                neighbourhood: config
                    .neighbourhood
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string),
                observes,
                owner: owner.expect("checked above"),
                purpose: purpose.expect("checked above"),
                legal_basis: legal_basis.expect("checked above"),
                personal_data: config.personal_data.expect("checked above"),
                retention: config.retention.clone(),
                contact: contact.expect("checked above"),
                dataset: config.dataset.clone(),
            });
        }
        if problems.is_empty() {
            Ok(Self { sensors })
        } else {
            Err(RegisterError { problems })
        }
    }

    /// Whether the register has no sensors.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// The register as a GeoJSON FeatureCollection (RFC 7946: WGS84 points), a feature per
    /// sensor with its fields as properties; texts in `language`. This is what the node's
    /// `sensor_register` table is read from.
    pub fn to_geojson(&self, language: &str) -> String {
        let features: Vec<serde_json::Value> = self
            .sensors
            .iter()
            .map(|s| {
                serde_json::json!({
                    "type": "Feature",
                    "geometry": { "type": "Point", "coordinates": [s.longitude, s.latitude] },
                    "properties": {
                        "id": s.id,
                        "name": s.name.get(language),
                        "kind": s.kind.as_ref().map(|k| k.get(language)),
                        "latitude": s.latitude,
                        "longitude": s.longitude,
                        "neighbourhood": s.neighbourhood,
                        "observes": s.observes.join(", "),
                        "owner": s.owner,
                        "purpose": s.purpose.get(language),
                        "legal_basis": s.legal_basis.get(language),
                        "personal_data": s.personal_data,
                        "retention": s.retention.as_ref().map(|r| r.get(language)),
                        "contact_email": s.contact.email,
                        "contact_url": s.contact.url,
                        "dataset": s.dataset,
                    }
                })
            })
            .collect();
        serde_json::json!({ "type": "FeatureCollection", "features": features }).to_string()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn coordinate(
    value: Option<f64>,
    key: &'static str,
    bound: f64,
    missing: &mut Vec<&'static str>,
    invalid: &mut Vec<String>,
) -> Option<f64> {
    match value {
        None => {
            missing.push(key);
            None
        }
        Some(v) if v.is_finite() && v.abs() <= bound => Some(v),
        Some(v) => {
            invalid.push(format!("{key} {v} is outside -{bound}..{bound}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> SensorConfig {
        toml::from_str(
            r#"
            id = "pm-weesperplein"
            name = { nl = "Fijnstofmeter Weesperplein", en = "Particulate sensor Weesperplein" }
            latitude = 52.361
            longitude = 4.907
            neighbourhood = "Weesperbuurt"
            observes = ["PM2.5", "PM10"]
            owner = "Gemeente Amsterdam"
            purpose = { nl = "Luchtkwaliteit meten", en = "Measuring air quality" }
            legal_basis = "Wettelijke taak (Wet milieubeheer)"
            personal_data = false
            retention = "10 jaar"
            contact = { email = "sensoren@example.org" }
            dataset = "air_quality"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn a_complete_entry_is_accepted() {
        let register = Register::resolve(&[complete()], &["air_quality".into()]).unwrap();
        let sensor = &register.sensors[0];
        assert_eq!(sensor.name.get("nl"), "Fijnstofmeter Weesperplein");
        assert_eq!(sensor.name.get("de"), "Particulate sensor Weesperplein");
        assert_eq!(sensor.contact.name, "Gemeente Amsterdam");
        let geojson: serde_json::Value = serde_json::from_str(&register.to_geojson("en")).unwrap();
        assert_eq!(
            geojson["features"][0]["geometry"]["coordinates"],
            serde_json::json!([4.907, 52.361])
        );
        assert_eq!(
            geojson["features"][0]["properties"]["purpose"],
            "Measuring air quality"
        );
    }

    #[test]
    fn every_missing_field_of_every_sensor_is_named() {
        let mut no_owner = complete();
        no_owner.owner = None;
        no_owner.purpose = Some(Text::Plain("  ".into()));
        let mut no_basis = complete();
        no_basis.id = Some("camera-1".into());
        no_basis.legal_basis = None;
        no_basis.personal_data = None;
        no_basis.latitude = Some(123.0);
        let err = Register::resolve(&[no_owner, no_basis], &["air_quality".into()]).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.problems[0].starts_with("sensor 'pm-weesperplein': missing owner, purpose"),
            "{err}"
        );
        assert!(
            err.problems[1].contains("sensor 'camera-1': missing legal_basis, personal_data"),
            "{err}"
        );
        assert!(err.problems[1].contains("latitude 123"), "{err}");
    }

    #[test]
    fn ids_datasets_and_languages_are_checked() {
        let mut twice = complete();
        twice.dataset = Some("nope".into());
        let mut bad = complete();
        bad.id = Some("Bad Id".into());
        bad.purpose = Some(Text::ByLanguage(BTreeMap::from([(
            "Dutch".into(),
            "x".into(),
        )])));
        let err =
            Register::resolve(&[complete(), twice, bad], &["air_quality".into()]).unwrap_err();
        let all = err.to_string();
        assert!(
            all.contains("the id 'pm-weesperplein' is used twice"),
            "{all}"
        );
        assert!(all.contains("dataset 'nope' is not a table"), "{all}");
        assert!(all.contains("the id 'Bad Id' must be"), "{all}");
        assert!(all.contains("'Dutch' is not a language code"), "{all}");
    }
}
