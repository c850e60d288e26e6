//! Catalog metadata as it appears in the node's configuration, and its validation.
//!
//! Everything is optional at the serde level so that one validation pass can name every
//! missing catalog-level field at once; [`CatalogConfig::resolve`] turns it into a
//! [`CatalogMetadata`] whose required fields are present.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use crate::vocab;

/// `[catalog]`: metadata of the node's catalog, inherited by every dataset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Public base URL of the node's HTTP service; every IRI of the catalog starts with it.
    pub base_url: Option<String>,
    /// Title of the catalog.
    pub title: Option<String>,
    /// Description of the catalog.
    pub description: Option<String>,
    /// Who publishes the data (the municipality).
    pub publisher: Option<AgentConfig>,
    /// Who created the data; defaults to the publisher.
    pub creator: Option<AgentConfig>,
    /// Where questions about the data go.
    pub contact_point: Option<ContactConfig>,
    /// Licence IRI of the data, e.g. `http://creativecommons.org/publicdomain/zero/1.0/`.
    pub license: Option<String>,
    /// `public`, `restricted` or `non_public`.
    pub access_rights: Option<AccessRights>,
    /// EU data-theme codes, e.g. `ENVI`, `TRAN`, `REGI`.
    pub themes: Option<Vec<String>>,
    /// Languages of the metadata and data (`nl`, `en`, or EU codes such as `NLD`).
    #[serde(default)]
    pub languages: Vec<String>,
    /// Keywords of the catalog, also given to every dataset without its own.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Homepage of the catalog (a web page for people).
    pub homepage: Option<String>,
    /// IRIs of the places the data covers, e.g. the municipality in a gazetteer.
    #[serde(default)]
    pub spatial: Vec<String>,
    /// The Flight SQL endpoint as clients outside reach it (default: `grpc://` and the
    /// node's Flight address).
    pub flight_endpoint_url: Option<String>,
}

/// A `foaf:Agent`: an organisation or person.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Name of the organisation.
    pub name: Option<String>,
    /// IRI identifying it, e.g. `https://identifier.overheid.nl/tooi/id/gemeente/gm0363`.
    pub uri: Option<String>,
    /// IRI of its type, e.g. `http://purl.org/adms/publishertype/LocalAuthority`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A `vcard:Kind`: where to ask about the data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactConfig {
    /// Name of the contact (a team or desk).
    pub name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Web page or form.
    pub url: Option<String>,
}

/// Who may access a dataset, as the EU access-right vocabulary says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessRights {
    /// Open to everyone.
    Public,
    /// Available under conditions (authentication, purpose).
    Restricted,
    /// Not available to the public.
    NonPublic,
}

impl AccessRights {
    /// The EU access-right IRI.
    pub fn iri(self) -> String {
        vocab::access_right(match self {
            Self::Public => "PUBLIC",
            Self::Restricted => "RESTRICTED",
            Self::NonPublic => "NON_PUBLIC",
        })
    }
}

/// `[datasets.<table>]`: metadata of one table; every field defaults to the catalog's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Title (default: the table name).
    pub title: Option<String>,
    /// Description (default: a sentence naming the table and the catalog).
    pub description: Option<String>,
    /// Keywords (default: the catalog's).
    pub keywords: Option<Vec<String>>,
    /// EU data-theme codes (default: the catalog's).
    pub themes: Option<Vec<String>>,
    /// Publisher (default: the catalog's).
    pub publisher: Option<AgentConfig>,
    /// Creator (default: the catalog's creator, else its publisher).
    pub creator: Option<AgentConfig>,
    /// Contact point (default: the catalog's).
    pub contact_point: Option<ContactConfig>,
    /// Licence IRI (default: the catalog's).
    pub license: Option<String>,
    /// Access rights (default: the catalog's).
    pub access_rights: Option<AccessRights>,
    /// Places covered (default: the catalog's).
    pub spatial: Option<Vec<String>>,
    /// Explicit temporal coverage; otherwise it is read from `temporal_column`.
    pub temporal: Option<TemporalConfig>,
    /// Column whose minimum and maximum are the temporal coverage (default: the first
    /// date or timestamp column).
    pub temporal_column: Option<String>,
    /// Last modification, `YYYY-MM-DD` or an RFC 3339 time (default: the newest source file).
    pub modified: Option<String>,
    /// A web page about the dataset.
    pub landing_page: Option<String>,
    /// How often the data is updated: an EU frequency code such as `DAILY`, `HOURLY`.
    pub update_frequency: Option<String>,
    /// Descriptions of columns, by column name.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnConfig>,
}

/// An explicit period of time, `YYYY-MM-DD` or RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalConfig {
    /// First day or instant covered.
    pub start: Option<String>,
    /// Last day or instant covered.
    pub end: Option<String>,
}

/// What a column means.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// A human title.
    pub title: Option<String>,
    /// What the values mean.
    pub description: Option<String>,
    /// The unit of measurement as a QUDT unit IRI, e.g.
    /// `http://qudt.org/vocab/unit/MicroGM-PER-M3`.
    pub unit: Option<String>,
}

/// The catalog's metadata with every required field present and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogMetadata {
    /// Base of every IRI, without a trailing slash.
    pub base_url: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Publisher.
    pub publisher: Agent,
    /// Creator (the publisher unless configured).
    pub creator: Agent,
    /// Contact point.
    pub contact_point: Contact,
    /// Licence IRI.
    pub license: String,
    /// Access rights.
    pub access_rights: AccessRights,
    /// Theme codes (checked against the EU list).
    pub themes: Vec<String>,
    /// Language IRIs.
    pub languages: Vec<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Homepage IRI.
    pub homepage: Option<String>,
    /// Spatial coverage IRIs.
    pub spatial: Vec<String>,
    /// Flight SQL endpoint URL, when configured.
    pub flight_endpoint_url: Option<String>,
}

/// A resolved agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Name.
    pub name: String,
    /// IRI.
    pub uri: String,
    /// Type IRI.
    pub kind: Option<String>,
}

/// A resolved contact point: a name and at least one of e-mail and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Web page.
    pub url: Option<String>,
}

/// What is wrong with the catalog metadata; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Required fields are missing (all of them are named) and/or values are invalid.
    #[error("{}", describe(missing, invalid))]
    Incomplete {
        /// Keys that must be set, e.g. `catalog.publisher.uri`.
        missing: Vec<String>,
        /// Keys whose values are invalid, with why.
        invalid: Vec<String>,
    },
}

fn describe(missing: &[String], invalid: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "catalog metadata is incomplete: missing {}",
            missing.join(", ")
        ));
    }
    if !invalid.is_empty() {
        parts.push(format!("invalid catalog metadata: {}", invalid.join("; ")));
    }
    format!(
        "{} (docs/catalog-guide.md lists every key; node/config/node.example.toml is a complete example)",
        parts.join("; ")
    )
}

/// Collects problems while checking a config.
#[derive(Default)]
struct Problems {
    missing: Vec<String>,
    invalid: Vec<String>,
}

impl Problems {
    fn require<'a, T>(&mut self, value: &'a Option<T>, key: &str) -> Option<&'a T> {
        if value.is_none() {
            self.missing.push(key.to_string());
        }
        value.as_ref()
    }

    fn require_text(&mut self, value: &Option<String>, key: &str) -> Option<String> {
        match value.as_deref().map(str::trim) {
            Some(text) if !text.is_empty() => Some(text.to_string()),
            _ => {
                self.missing.push(key.to_string());
                None
            }
        }
    }

    fn iri(&mut self, value: &str, key: &str) -> Option<String> {
        match Url::parse(value) {
            Ok(url) if !url.cannot_be_a_base() || url.scheme() == "mailto" => Some(value.into()),
            Ok(_) | Err(_) => {
                self.invalid
                    .push(format!("{key}: '{value}' is not an absolute IRI"));
                None
            }
        }
    }

    fn themes(&mut self, codes: &[String], key: &str) {
        for code in codes {
            if vocab::theme(code).is_none() {
                let known: Vec<_> = vocab::THEMES.iter().map(|(c, _)| *c).collect();
                self.invalid.push(format!(
                    "{key}: '{code}' is not an EU data theme (one of {})",
                    known.join(", ")
                ));
            }
        }
    }

    fn agent(&mut self, agent: &AgentConfig, key: &str) -> Option<Agent> {
        let name = self.require_text(&agent.name, &format!("{key}.name"));
        let uri = self
            .require_text(&agent.uri, &format!("{key}.uri"))
            .and_then(|uri| self.iri(&uri, &format!("{key}.uri")));
        let kind = agent
            .kind
            .as_ref()
            .and_then(|k| self.iri(k, &format!("{key}.type")));
        Some(Agent {
            name: name?,
            uri: uri?,
            kind,
        })
    }

    fn contact(&mut self, contact: &ContactConfig, key: &str) -> Option<Contact> {
        let name = self.require_text(&contact.name, &format!("{key}.name"));
        if contact.email.is_none() && contact.url.is_none() {
            self.missing.push(format!("{key}.email (or {key}.url)"));
            return None;
        }
        if let Some(email) = &contact.email
            && (!email.contains('@') || email.contains(char::is_whitespace))
        {
            self.invalid
                .push(format!("{key}.email: '{email}' is not an e-mail address"));
        }
        let url = contact
            .url
            .as_ref()
            .and_then(|u| self.iri(u, &format!("{key}.url")));
        Some(Contact {
            name: name?,
            email: contact.email.clone(),
            url,
        })
    }

    /// `value` if nothing is missing or invalid, else every problem found. `value` is None
    /// only where a problem was recorded, so a None without problems cannot occur (it would
    /// be reported as an empty error rather than a panic).
    fn finish<T>(self, value: Option<T>) -> Result<T, MetadataError> {
        match value {
            Some(value) if self.missing.is_empty() && self.invalid.is_empty() => Ok(value),
            _ => Err(MetadataError::Incomplete {
                missing: self.missing,
                invalid: self.invalid,
            }),
        }
    }
}

impl CatalogConfig {
    /// Checks the catalog-level metadata and the dataset sections against the served
    /// `tables`; every missing or invalid field is named in one error.
    pub fn resolve(
        &self,
        datasets: &BTreeMap<String, DatasetConfig>,
        tables: &[String],
    ) -> Result<CatalogMetadata, MetadataError> {
        let mut p = Problems::default();
        let base_url = p
            .require_text(&self.base_url, "catalog.base_url")
            .and_then(|b| p.iri(&b, "catalog.base_url"))
            .map(|b| b.trim_end_matches('/').to_string());
        let title = p.require_text(&self.title, "catalog.title");
        let description = p.require_text(&self.description, "catalog.description");
        let publisher = p
            .require(&self.publisher, "catalog.publisher")
            .and_then(|a| p.agent(a, "catalog.publisher"));
        let creator = self
            .creator
            .as_ref()
            .and_then(|a| p.agent(a, "catalog.creator"));
        let contact_point = p
            .require(&self.contact_point, "catalog.contact_point")
            .and_then(|c| p.contact(c, "catalog.contact_point"));
        let license = p
            .require_text(&self.license, "catalog.license")
            .and_then(|l| p.iri(&l, "catalog.license"));
        let access_rights = p
            .require(&self.access_rights, "catalog.access_rights")
            .copied();
        let themes = match &self.themes {
            Some(themes) if !themes.is_empty() => {
                p.themes(themes, "catalog.themes");
                Some(themes.clone())
            }
            _ => {
                p.missing.push("catalog.themes".into());
                None
            }
        };
        let mut languages = Vec::new();
        for code in &self.languages {
            match vocab::language(code) {
                Some(iri) => languages.push(iri),
                None => p.invalid.push(format!(
                    "catalog.languages: '{code}' is neither an ISO 639-1 code this node knows \
                     (nl, en, fy, de, fr, ...) nor an EU language code such as NLD"
                )),
            }
        }
        let homepage = self
            .homepage
            .as_ref()
            .and_then(|h| p.iri(h, "catalog.homepage"));
        let spatial = self
            .spatial
            .iter()
            .filter_map(|s| p.iri(s, "catalog.spatial"))
            .collect();
        let flight_endpoint_url = self
            .flight_endpoint_url
            .as_ref()
            .and_then(|u| p.iri(u, "catalog.flight_endpoint_url"));

        for (name, dataset) in datasets {
            let key = format!("datasets.{name}");
            if !tables.iter().any(|t| t == name) {
                p.invalid.push(format!(
                    "{key}: no table '{name}' is served (tables: {})",
                    tables.join(", ")
                ));
            }
            dataset.check(&key, &mut p);
        }
        let metadata = publisher.and_then(|publisher| {
            Some(CatalogMetadata {
                base_url: base_url?,
                title: title?,
                description: description?,
                creator: creator.unwrap_or_else(|| publisher.clone()),
                publisher,
                contact_point: contact_point?,
                license: license?,
                access_rights: access_rights?,
                themes: themes?,
                languages,
                keywords: self.keywords.clone(),
                homepage,
                spatial,
                flight_endpoint_url,
            })
        });
        p.finish(metadata)
    }
}

impl DatasetConfig {
    fn check(&self, key: &str, p: &mut Problems) {
        if let Some(themes) = &self.themes {
            p.themes(themes, &format!("{key}.themes"));
        }
        if let Some(agent) = &self.publisher {
            p.agent(agent, &format!("{key}.publisher"));
        }
        if let Some(agent) = &self.creator {
            p.agent(agent, &format!("{key}.creator"));
        }
        if let Some(contact) = &self.contact_point {
            p.contact(contact, &format!("{key}.contact_point"));
        }
        if let Some(license) = &self.license {
            p.iri(license, &format!("{key}.license"));
        }
        for place in self.spatial.iter().flatten() {
            p.iri(place, &format!("{key}.spatial"));
        }
        if let Some(page) = &self.landing_page {
            p.iri(page, &format!("{key}.landing_page"));
        }
        if let Some(modified) = &self.modified
            && crate::terms::temporal_literal(modified).is_none()
        {
            p.invalid.push(format!(
                "{key}.modified: '{modified}' is neither YYYY-MM-DD nor an RFC 3339 time"
            ));
        }
        if let Some(temporal) = &self.temporal {
            for (bound, value) in [("start", &temporal.start), ("end", &temporal.end)] {
                if let Some(value) = value
                    && crate::terms::temporal_literal(value).is_none()
                {
                    p.invalid.push(format!(
                        "{key}.temporal.{bound}: '{value}' is neither YYYY-MM-DD nor an RFC 3339 time"
                    ));
                }
            }
        }
        if let Some(frequency) = &self.update_frequency
            && vocab::frequency(frequency).is_none()
        {
            p.invalid.push(format!(
                "{key}.update_frequency: '{frequency}' is not an EU frequency code (one of {})",
                vocab::FREQUENCIES.join(", ")
            ));
        }
        for (column, meta) in &self.columns {
            if let Some(unit) = &meta.unit {
                p.iri(unit, &format!("{key}.columns.{column}.unit"));
            }
        }
    }
}
