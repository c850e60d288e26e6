//! Catalog metadata as it appears in the node's configuration.
//!
//! Everything is optional at the serde level so that one validation pass can name every
//! missing catalog-level field at once; [`CatalogConfig::resolve`] (in `metadata.rs`) turns it
//! into the resolved metadata, whose required fields are present.

use std::collections::BTreeMap;

use serde::Deserialize;

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
