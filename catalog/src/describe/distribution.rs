//! The `dcat:Distribution` of a dataset: its table as the Flight SQL service serves it.

use oxigraph::model::{NamedNode, NamedOrBlankNode};

use super::dataset::Described;
use super::graph::Graph;
use super::{Context, TableFacts};
use crate::terms::{byte_size, integer, iri, text};
use crate::vocab::{self, DCAT, DCT, UDN};

/// Describes the distribution of `dataset`, accessed through `flight`; returns its node.
pub(super) fn describe(
    g: &mut Graph,
    cx: &Context,
    table: &TableFacts,
    dataset: &Described,
    flight: &NamedOrBlankNode,
) -> NamedOrBlankNode {
    let sql_name = cx.sql_name(table);
    let endpoint = &cx.node.flight_endpoint_url;
    let dist: NamedOrBlankNode = NamedNode::new_unchecked(cx.ids.distribution(&table.name)).into();
    g.add(
        dataset.node.clone(),
        iri(DCAT, "distribution"),
        dist.clone(),
    );
    g.a(dist.clone(), iri(DCAT, "Distribution"));
    g.add(
        dist.clone(),
        iri(DCT, "title"),
        text(&format!("SQL table {sql_name}")),
    );
    g.add(
        dist.clone(),
        iri(DCT, "description"),
        text(&format!(
            "Query with SQL over Arrow Flight SQL at {endpoint}: SELECT * FROM {sql_name}"
        )),
    );
    g.add(
        dist.clone(),
        iri(DCAT, "accessURL"),
        NamedNode::new_unchecked(endpoint),
    );
    g.add(dist.clone(), iri(DCAT, "accessService"), flight.clone());
    g.license(&dist, dataset.license);
    media_type(g, &dist);
    g.conforms_to(&dist, vocab::FLIGHT_SQL_BINDING);
    g.add(dist.clone(), iri(UDN, "sqlTable"), text(&sql_name));
    facts(g, &dist, table, dataset);
    g.languages(&dist, &cx.catalog.languages);
    dist
}

/// Arrow IPC streams, the format Flight SQL answers in.
fn media_type(g: &mut Graph, dist: &NamedOrBlankNode) {
    g.typed(
        dist,
        iri(DCT, "format"),
        vocab::ARROW_STREAM_MEDIA_TYPE,
        iri(DCT, "MediaTypeOrExtent"),
    );
    g.typed(
        dist,
        iri(DCAT, "mediaType"),
        vocab::ARROW_STREAM_MEDIA_TYPE,
        iri(DCT, "MediaType"),
    );
}

/// What the node measured of the table: size, rows, modification, source format.
fn facts(g: &mut Graph, dist: &NamedOrBlankNode, table: &TableFacts, dataset: &Described) {
    if let Some(bytes) = table.byte_size {
        g.add(dist.clone(), iri(DCAT, "byteSize"), byte_size(bytes));
    }
    if let Some(rows) = table.row_count {
        g.add(dist.clone(), iri(UDN, "rowCount"), integer(rows));
    }
    if let Some(modified) = &dataset.modified {
        g.add(dist.clone(), iri(DCT, "modified"), modified.clone());
    }
    if let Some(file_type) = table.source_format.as_deref().and_then(vocab::file_type) {
        g.typed(
            dist,
            iri(UDN, "sourceFormat"),
            &file_type,
            iri(DCT, "MediaTypeOrExtent"),
        );
    }
}
