//! Building the catalog graph: DCAT-AP-NL for the node, its datasets, distributions and
//! services; CSVW for columns; the UDN terms for what DCAT has no word for (row counts, SQL
//! names).
//!
//! The graph is a sorted list of triples, so the same configuration and data always give the
//! same output, byte for byte. Every resource has an IRI under the base URL (see [`Iris`]),
//! except the few structural nodes (periods of time, contact points) that are blank nodes
//! with stable labels.
//!
//! [`build`] composes one step per kind of resource, each in its own file: the catalog
//! (`catalog.rs`), its data services (`services.rs`), each table's dataset (`dataset.rs`),
//! distribution (`distribution.rs`) and columns (`columns.rs`); `graph.rs` holds the
//! statements they share (agents, contact points, themes, licences). `endpoints.rs` describes
//! the SPARQL and Flight SQL endpoints themselves, documents served beside the catalog.

mod catalog;
mod columns;
mod dataset;
mod distribution;
mod endpoints;
mod graph;
mod services;

use std::collections::BTreeMap;

use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use oxigraph::model::{Literal, Triple};

pub use self::columns::xsd_datatype;
pub use self::dataset::temporal_column;
pub use self::endpoints::flight_description;
pub(crate) use self::endpoints::service_description;
use self::graph::Graph;
use crate::config::DatasetConfig;
use crate::error::MetadataError;
use crate::iris::Iris;
use crate::metadata::CatalogMetadata;

/// The node as the catalog describes it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's name: its SQL catalog.
    pub name: String,
    /// The Flight SQL endpoint URL clients use.
    pub flight_endpoint_url: String,
    /// Name of the server software.
    pub server_name: String,
    /// Version of the server software.
    pub server_version: String,
    /// The UDN conformance classes the node claims: `dct:conformsTo` of its Flight SQL service.
    pub conforms_to: Vec<crate::ConformanceClass>,
}

/// What the node knows about one served table from its data and storage.
#[derive(Debug, Clone)]
pub struct TableFacts {
    /// SQL name of the table in the node's `public` schema.
    pub name: String,
    /// Its Arrow schema.
    pub schema: SchemaRef,
    /// Format of the source files (`parquet`, `csv`, ...), if known.
    pub source_format: Option<String>,
    /// Bytes of the source files at rest.
    pub byte_size: Option<u64>,
    /// Newest modification time of the source files.
    pub modified: Option<DateTime<Utc>>,
    /// Number of rows.
    pub row_count: Option<u64>,
    /// Smallest and largest value of the temporal column, as `YYYY-MM-DD` or RFC 3339 text.
    pub temporal: Option<(String, String)>,
    /// Records of the source that could not be mapped onto the table (citizen-measurement
    /// formats), if the source is mapped.
    pub unmapped_records: Option<u64>,
}

/// What every step of the description reads.
struct Context<'a> {
    ids: Iris,
    catalog: &'a CatalogMetadata,
    node: &'a NodeInfo,
}

impl Context<'_> {
    /// The table's qualified SQL name, `<node>.public.<table>`.
    fn sql_name(&self, table: &TableFacts) -> String {
        format!("{}.public.{}", self.node.name, table.name)
    }
}

/// Builds the whole catalog graph, sorted. Fails when dataset metadata names columns the
/// table does not have.
pub fn build(
    catalog: &CatalogMetadata,
    node: &NodeInfo,
    tables: &[TableFacts],
    datasets: &BTreeMap<String, DatasetConfig>,
) -> Result<Vec<Triple>, MetadataError> {
    let cx = Context {
        ids: Iris::new(&catalog.base_url),
        catalog,
        node,
    };
    let mut g = Graph::default();
    let cat = catalog::describe(&mut g, &cx);
    let flight = services::describe(&mut g, &cx, &cat);
    let none = DatasetConfig::default();
    let mut invalid = Vec::new();
    let mut newest: Option<Literal> = None;
    for table in tables {
        let config = datasets.get(&table.name).unwrap_or(&none);
        invalid.extend(columns::unknown(table, config));
        let dataset = dataset::describe(&mut g, &cx, table, config, &cat, &flight);
        let dist = distribution::describe(&mut g, &cx, table, &dataset, &flight);
        columns::describe(&mut g, &cx, table, config, &dist);
        if let Some(modified) = dataset.modified
            && newest.as_ref().is_none_or(|n| n.value() < modified.value())
        {
            newest = Some(modified);
        }
    }
    catalog::modified(&mut g, &cat, newest);
    if invalid.is_empty() {
        Ok(g.into_sorted())
    } else {
        Err(MetadataError::Incomplete {
            missing: Vec::new(),
            invalid,
        })
    }
}
