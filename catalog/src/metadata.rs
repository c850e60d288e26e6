//! The catalog's metadata resolved from its configuration: every required field present,
//! every value checked, and every problem named in one [`MetadataError`].

use std::collections::BTreeMap;

use url::Url;

use crate::config::{AccessRights, AgentConfig, CatalogConfig, ContactConfig, DatasetConfig};
use crate::error::MetadataError;
use crate::vocab;

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

    /// The catalog's themes: at least one, each an EU data theme.
    fn required_themes(&mut self, themes: &Option<Vec<String>>, key: &str) -> Option<Vec<String>> {
        match themes {
            Some(themes) if !themes.is_empty() => {
                self.themes(themes, key);
                Some(themes.clone())
            }
            _ => {
                self.missing.push(key.into());
                None
            }
        }
    }

    /// The IRIs of the catalog's languages.
    fn languages(&mut self, codes: &[String]) -> Vec<String> {
        let mut languages = Vec::new();
        for code in codes {
            match vocab::language(code) {
                Some(iri) => languages.push(iri),
                None => self.invalid.push(format!(
                    "catalog.languages: '{code}' is neither an ISO 639-1 code this node knows \
                     (nl, en, fy, de, fr, ...) nor an EU language code such as NLD"
                )),
            }
        }
        languages
    }

    /// Checks each dataset section, and that its table is served.
    fn datasets(&mut self, datasets: &BTreeMap<String, DatasetConfig>, tables: &[String]) {
        for (name, dataset) in datasets {
            let key = format!("datasets.{name}");
            if !tables.iter().any(|t| t == name) {
                self.invalid.push(format!(
                    "{key}: no table '{name}' is served (tables: {})",
                    tables.join(", ")
                ));
            }
            dataset.check(&key, self);
        }
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
        let themes = p.required_themes(&self.themes, "catalog.themes");
        let languages = p.languages(&self.languages);
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

        p.datasets(datasets, tables);
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
