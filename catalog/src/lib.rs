//! The catalog of a Polder node: DCAT-AP-NL 3.0 metadata of its datasets and services,
//! built from the configuration and the data, kept in an oxigraph store and served over
//! HTTP (`/catalog`) and the SPARQL 1.1 Protocol (`/sparql`).
//!
//! This crate knows nothing of query engines: the node hands it [`TableFacts`] (schema, row
//! count, sizes) and it returns triples.
//!
//! Where to start:
//! - [`config`] is the `[catalog]` and `[datasets.*]` configuration as written;
//!   [`metadata`] resolves it into [`CatalogMetadata`], naming every problem in one
//!   [`MetadataError`].
//! - [`describe`] builds the graph ([`build`]), one file per kind of resource.
//! - [`store`] holds it as a [`Catalog`]; [`http`] serves `/catalog` and `/sparql`.
//! - A SPARQL query goes [`http`] -> [`Catalog::query`] (length and nesting checks, a slot)
//!   -> [`sparql`] evaluation, in process or in a [`worker`] process -> an [`sparql::Answer`];
//!   failures are a [`SparqlError`], whose [`SparqlErrorKind`] fixes the HTTP status.
//! - [`serialize`] writes RDF (Turtle, JSON-LD, N-Triples, RDF/XML); [`vocab`] and [`terms`]
//!   hold the vocabularies and term constructors.

pub mod config;
pub mod conformance;
pub mod describe;
pub mod error;
pub mod http;
mod iris;
mod jsonld;
pub mod metadata;
pub mod negotiate;
mod nesting;
mod rdfxml;
pub mod sensors;
pub mod serialize;
pub mod sparql;
pub mod store;
pub mod terms;
pub mod vocab;
pub mod worker;

pub use config::{CatalogConfig, DatasetConfig};
pub use conformance::ConformanceClass;
pub use describe::{NodeInfo, TableFacts, build, flight_description, temporal_column};
pub use error::{MetadataError, SparqlError, SparqlErrorKind};
pub use http::{SharedCatalog, router};
pub use iris::Iris;
pub use metadata::CatalogMetadata;
pub use sparql::{RequestDataset, SparqlLimits};
pub use store::Catalog;
pub use worker::WorkerCommand;
