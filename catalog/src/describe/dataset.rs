//! A served table as a `dcat:Dataset`: its metadata after inheritance from the catalog, its
//! temporal coverage and its last modification.

use arrow_schema::{DataType, SchemaRef};
use oxigraph::model::{BlankNode, Literal, NamedNode, NamedOrBlankNode};

use super::graph::Graph;
use super::{Context, TableFacts};
use crate::config::{AgentConfig, DatasetConfig, TemporalConfig};
use crate::iris::segment;
use crate::metadata::{Agent, CatalogMetadata, Contact};
use crate::terms::{integer, iri, temporal_literal, text, xsd};
use crate::vocab::{self, DCAT, DCT, FOAF, UDN};

/// The column whose range is a table's temporal coverage: the configured one, else the first
/// date or timestamp column.
pub fn temporal_column(schema: &SchemaRef, config: Option<&DatasetConfig>) -> Option<String> {
    if let Some(column) = config.and_then(|c| c.temporal_column.as_ref()) {
        return Some(column.clone());
    }
    if config.is_some_and(|c| c.temporal.is_some()) {
        return None;
    }
    schema
        .fields()
        .iter()
        .find(|f| {
            matches!(
                f.data_type(),
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            )
        })
        .map(|f| f.name().clone())
}

/// The metadata of one dataset after inheritance from the catalog.
struct Effective<'a> {
    title: String,
    description: String,
    keywords: &'a [String],
    themes: &'a [String],
    publisher: Agent,
    creator: Agent,
    contact: (String, Contact),
    license: &'a str,
    access_rights: String,
    spatial: &'a [String],
}

fn resolve_agent(agent: &Option<AgentConfig>) -> Option<Agent> {
    agent.as_ref().map(|a| Agent {
        name: a.name.clone().unwrap_or_default(),
        uri: a.uri.clone().unwrap_or_default(),
        kind: a.kind.clone(),
    })
}

fn effective<'a>(cx: &Context<'a>, table: &str, config: &'a DatasetConfig) -> Effective<'a> {
    let catalog: &'a CatalogMetadata = cx.catalog;
    let contact = match &config.contact_point {
        Some(c) => (
            table.to_string(),
            Contact {
                name: c.name.clone().unwrap_or_default(),
                email: c.email.clone(),
                url: c.url.clone(),
            },
        ),
        None => ("catalog".to_string(), catalog.contact_point.clone()),
    };
    Effective {
        title: config.title.clone().unwrap_or_else(|| table.to_string()),
        description: config.description.clone().unwrap_or_else(|| {
            format!(
                "The table {}.public.{table} of {}, served over Arrow Flight SQL.",
                cx.node.name, catalog.title
            )
        }),
        keywords: config.keywords.as_deref().unwrap_or(&catalog.keywords),
        themes: config.themes.as_deref().unwrap_or(&catalog.themes),
        publisher: resolve_agent(&config.publisher).unwrap_or_else(|| catalog.publisher.clone()),
        creator: resolve_agent(&config.creator).unwrap_or_else(|| catalog.creator.clone()),
        contact,
        license: config.license.as_deref().unwrap_or(&catalog.license),
        access_rights: config.access_rights.unwrap_or(catalog.access_rights).iri(),
        spatial: config.spatial.as_deref().unwrap_or(&catalog.spatial),
    }
}

/// What the distribution of a dataset takes from it.
pub(super) struct Described<'a> {
    /// The dataset's node.
    pub(super) node: NamedOrBlankNode,
    /// Its licence.
    pub(super) license: &'a str,
    /// Its last modification.
    pub(super) modified: Option<Literal>,
}

/// Describes `table` as a dataset of the catalog `cat`, served by `flight`.
pub(super) fn describe<'a>(
    g: &mut Graph,
    cx: &Context<'a>,
    table: &TableFacts,
    config: &'a DatasetConfig,
    cat: &NamedOrBlankNode,
    flight: &NamedOrBlankNode,
) -> Described<'a> {
    let meta = effective(cx, &table.name, config);
    let ds: NamedOrBlankNode = NamedNode::new_unchecked(cx.ids.dataset(&table.name)).into();
    g.add(cat.clone(), iri(DCAT, "dataset"), ds.clone());
    g.add(flight.clone(), iri(DCAT, "servesDataset"), ds.clone());
    g.a(ds.clone(), iri(DCAT, "Dataset"));
    g.add(ds.clone(), iri(DCT, "title"), text(&meta.title));
    g.add(ds.clone(), iri(DCT, "description"), text(&meta.description));
    g.add(
        ds.clone(),
        iri(DCT, "identifier"),
        text(&cx.ids.dataset(&table.name)),
    );
    g.add(ds.clone(), iri(UDN, "sqlTable"), text(&cx.sql_name(table)));
    // DCAT-AP puts the licence on the distribution; harvesters such as ckanext-dcat read
    // it on the dataset too, so it is stated on both.
    g.license(&ds, meta.license);
    g.keywords(&ds, meta.keywords);
    g.themes(&ds, meta.themes);
    g.agent(&ds, iri(DCT, "publisher"), &meta.publisher);
    g.agent(&ds, iri(DCT, "creator"), &meta.creator);
    g.contact(&ds, &meta.contact.0, &meta.contact.1);
    g.access_rights(&ds, &meta.access_rights);
    g.spatial(&ds, meta.spatial);
    g.languages(&ds, &cx.catalog.languages);
    pages_and_frequency(g, &ds, config);
    temporal(g, &ds, table, config);
    let modified = modified(table, config);
    if let Some(modified) = &modified {
        g.add(ds.clone(), iri(DCT, "modified"), modified.clone());
    }
    if let Some(unmapped) = table.unmapped_records {
        g.add(ds.clone(), iri(UDN, "unmappedRecords"), integer(unmapped));
    }
    if let Some(rows) = table.row_count {
        g.add(ds.clone(), iri(UDN, "rowCount"), integer(rows));
    }
    Described {
        node: ds,
        license: meta.license,
        modified,
    }
}

/// The landing page and update frequency, when configured.
fn pages_and_frequency(g: &mut Graph, ds: &NamedOrBlankNode, config: &DatasetConfig) {
    if let Some(page) = &config.landing_page {
        g.typed(ds, iri(DCAT, "landingPage"), page, iri(FOAF, "Document"));
    }
    if let Some(frequency) = &config.update_frequency {
        g.typed(
            ds,
            iri(DCT, "accrualPeriodicity"),
            &vocab::frequency(frequency).expect("frequencies are checked at load"),
            iri(DCT, "Frequency"),
        );
    }
}

/// The temporal coverage: the configured period, else the measured range of the table's
/// temporal column.
fn temporal(g: &mut Graph, ds: &NamedOrBlankNode, table: &TableFacts, config: &DatasetConfig) {
    let period = match &config.temporal {
        Some(TemporalConfig { start, end }) => Some((start.clone(), end.clone())),
        None => table
            .temporal
            .as_ref()
            .map(|(s, e)| (Some(s.clone()), Some(e.clone()))),
    };
    let Some((start, end)) = period else {
        return;
    };
    let node = BlankNode::new_unchecked(format!("temporal-{}", segment(&table.name)));
    g.a(node.clone(), iri(DCT, "PeriodOfTime"));
    for (p, value) in [("startDate", start), ("endDate", end)] {
        if let Some(literal) = value.as_deref().and_then(temporal_literal) {
            g.add(node.clone(), iri(DCAT, p), literal);
        }
    }
    g.add(ds.clone(), iri(DCT, "temporal"), node);
}

/// The last modification: the configured one, else the newest source file's.
fn modified(table: &TableFacts, config: &DatasetConfig) -> Option<Literal> {
    config
        .modified
        .as_deref()
        .and_then(temporal_literal)
        .or_else(|| {
            table.modified.map(|m| {
                Literal::new_typed_literal(
                    m.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    xsd("dateTime"),
                )
            })
        })
}
