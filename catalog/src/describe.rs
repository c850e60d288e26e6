//! Building the catalog graph: DCAT-AP-NL for the node, its datasets, distributions and
//! services; CSVW for columns; the UDN terms for what DCAT has no word for (row counts, SQL
//! names).
//!
//! The graph is a sorted list of triples, so the same configuration and data always give the
//! same output, byte for byte. Every resource has an IRI under the base URL, except the few
//! structural nodes (periods of time, contact points) that are blank nodes with stable labels.

use std::collections::{BTreeMap, HashSet};

use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use oxigraph::model::{BlankNode, Literal, NamedNode, NamedOrBlankNode, Term, Triple};

use crate::config::{
    Agent, CatalogMetadata, Contact, DatasetConfig, MetadataError, TemporalConfig,
};
use crate::vocab::{self, CSVW, DCAT, DCT, FOAF, GEO, QUDT, RDF, SKOS, UDN, VCARD, XSD};

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
}

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

/// The typed literal of a date (`YYYY-MM-DD`, xsd:date) or time (RFC 3339 or
/// `YYYY-MM-DDTHH:MM:SS[.f]`, xsd:dateTime), or None if it is neither.
pub fn temporal_literal(value: &str) -> Option<Literal> {
    let value = value.trim();
    if NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok() {
        return Some(Literal::new_typed_literal(value, xsd("date")));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Some(Literal::new_typed_literal(
            time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            xsd("dateTime"),
        ));
    }
    let naive = value.replace(' ', "T");
    if chrono::NaiveDateTime::parse_from_str(&naive, "%Y-%m-%dT%H:%M:%S%.f").is_ok() {
        return Some(Literal::new_typed_literal(naive, xsd("dateTime")));
    }
    None
}

fn iri(ns: &str, local: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{ns}{local}"))
}

fn xsd(local: &str) -> NamedNode {
    iri(XSD, local)
}

fn text(value: &str) -> Term {
    Literal::new_simple_literal(value).into()
}

/// A count or position: `xsd:integer`, so that SPARQL aggregates (which compute in
/// `xsd:integer`) give terms equal to the stored ones.
fn integer(value: u64) -> Term {
    Literal::new_typed_literal(value.to_string(), xsd("integer")).into()
}

/// A byte size: DCAT-AP requires `xsd:nonNegativeInteger`.
fn byte_size(value: u64) -> Term {
    Literal::new_typed_literal(value.to_string(), xsd("nonNegativeInteger")).into()
}

/// Percent-encodes what may not appear in an IRI path segment.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The IRIs of the catalog's resources.
#[derive(Debug, Clone)]
pub struct Iris {
    base: String,
}

impl Iris {
    /// IRIs under `base` (no trailing slash).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The catalog.
    pub fn catalog(&self) -> String {
        format!("{}/catalog", self.base)
    }

    /// A dataset.
    pub fn dataset(&self, table: &str) -> String {
        format!("{}/dataset/{}", self.base, segment(table))
    }

    /// The Flight SQL distribution of a dataset.
    pub fn distribution(&self, table: &str) -> String {
        format!("{}/flight-sql", self.dataset(table))
    }

    /// The CSVW schema of a dataset.
    pub fn table_schema(&self, table: &str) -> String {
        format!("{}/schema", self.dataset(table))
    }

    /// A column of a dataset.
    pub fn column(&self, table: &str, column: &str) -> String {
        format!("{}/{}", self.table_schema(table), segment(column))
    }

    /// The Flight SQL data service.
    pub fn flight_service(&self) -> String {
        format!("{}/service/flight-sql", self.base)
    }

    /// The machine-readable description of the Flight SQL endpoint.
    pub fn flight_description(&self) -> String {
        format!("{}/description", self.flight_service())
    }

    /// The SPARQL data service.
    pub fn sparql_service(&self) -> String {
        format!("{}/service/sparql", self.base)
    }

    /// The SPARQL endpoint (its bare GET is the SPARQL service description).
    pub fn sparql_endpoint(&self) -> String {
        format!("{}/sparql", self.base)
    }
}

/// Triples being collected, with the types of the vocabulary terms they use.
#[derive(Default)]
struct Graph {
    triples: HashSet<Triple>,
}

impl Graph {
    fn add(&mut self, s: impl Into<NamedOrBlankNode>, p: NamedNode, o: impl Into<Term>) {
        self.triples.insert(Triple::new(s, p, o));
    }

    fn a(&mut self, s: impl Into<NamedOrBlankNode>, class: NamedNode) {
        self.add(s, iri(RDF, "type"), class);
    }

    /// An IRI object of `class` (range shapes need the type stated).
    fn typed(&mut self, s: &NamedOrBlankNode, p: NamedNode, object: &str, class: NamedNode) {
        let o = NamedNode::new_unchecked(object);
        self.a(o.clone(), class);
        self.add(s.clone(), p, o);
    }

    fn agent(&mut self, s: &NamedOrBlankNode, p: NamedNode, agent: &Agent) {
        let node = NamedNode::new_unchecked(&agent.uri);
        self.a(node.clone(), iri(FOAF, "Agent"));
        self.add(node.clone(), iri(FOAF, "name"), text(&agent.name));
        if let Some(kind) = &agent.kind {
            self.typed(
                &node.clone().into(),
                iri(DCT, "type"),
                kind,
                iri(SKOS, "Concept"),
            );
            self.add(
                NamedNode::new_unchecked(kind),
                iri(SKOS, "prefLabel"),
                text(kind.rsplit('/').next().unwrap_or(kind)),
            );
        }
        self.add(s.clone(), p, node);
    }

    fn contact(&mut self, s: &NamedOrBlankNode, label: &str, contact: &Contact) {
        let node = BlankNode::new_unchecked(format!("contact-{label}"));
        self.a(node.clone(), iri(VCARD, "Kind"));
        self.add(node.clone(), iri(VCARD, "fn"), text(&contact.name));
        if let Some(email) = &contact.email {
            self.add(
                node.clone(),
                iri(VCARD, "hasEmail"),
                NamedNode::new_unchecked(format!("mailto:{email}")),
            );
        }
        if let Some(url) = &contact.url {
            self.add(
                node.clone(),
                iri(VCARD, "hasURL"),
                NamedNode::new_unchecked(url),
            );
        }
        self.add(s.clone(), iri(DCAT, "contactPoint"), node);
    }

    fn theme(&mut self, s: &NamedOrBlankNode, code: &str) {
        let (theme, label) = vocab::theme(code).expect("themes are checked at load");
        let node = NamedNode::new_unchecked(&theme);
        self.a(node.clone(), iri(SKOS, "Concept"));
        self.add(
            node.clone(),
            iri(SKOS, "prefLabel"),
            Literal::new_language_tagged_literal_unchecked(label, "en"),
        );
        self.add(
            node.clone(),
            iri(SKOS, "inScheme"),
            NamedNode::new_unchecked(vocab::theme_scheme()),
        );
        self.add(s.clone(), iri(DCAT, "theme"), node);
    }

    fn into_sorted(self) -> Vec<Triple> {
        let mut triples: Vec<Triple> = self.triples.into_iter().collect();
        sort_triples(&mut triples);
        triples
    }
}

/// Sorts triples into the catalog's canonical order: by subject, each subject's `rdf:type`
/// first, then by predicate and object (all compared in their N-Triples form); duplicates
/// are removed.
pub fn sort_triples(triples: &mut Vec<Triple>) {
    let rdf_type = format!("{RDF}type");
    triples.sort_by_cached_key(|t| {
        (
            t.subject.to_string(),
            t.predicate.as_str() != rdf_type,
            t.predicate.as_str().to_string(),
            t.object.to_string(),
        )
    });
    triples.dedup();
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

fn effective<'a>(
    catalog: &'a CatalogMetadata,
    node: &NodeInfo,
    table: &str,
    config: &'a DatasetConfig,
) -> Effective<'a> {
    let resolve_agent = |agent: &Option<crate::config::AgentConfig>| {
        agent.as_ref().map(|a| Agent {
            name: a.name.clone().unwrap_or_default(),
            uri: a.uri.clone().unwrap_or_default(),
            kind: a.kind.clone(),
        })
    };
    let publisher = resolve_agent(&config.publisher).unwrap_or_else(|| catalog.publisher.clone());
    let creator = resolve_agent(&config.creator).unwrap_or_else(|| catalog.creator.clone());
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
                node.name, catalog.title
            )
        }),
        keywords: config.keywords.as_deref().unwrap_or(&catalog.keywords),
        themes: config.themes.as_deref().unwrap_or(&catalog.themes),
        publisher,
        creator,
        contact,
        license: config.license.as_deref().unwrap_or(&catalog.license),
        access_rights: config.access_rights.unwrap_or(catalog.access_rights).iri(),
        spatial: config.spatial.as_deref().unwrap_or(&catalog.spatial),
    }
}

/// XSD (or CSVW) datatype of an Arrow type, for `csvw:datatype`.
pub fn xsd_datatype(field: &Field) -> NamedNode {
    if field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == "geoarrow.wkb")
    {
        return iri(GEO, "wkbLiteral");
    }
    let local = match field.data_type() {
        DataType::Boolean => "boolean",
        DataType::Int8 => "byte",
        DataType::Int16 => "short",
        DataType::Int32 => "int",
        DataType::Int64 => "long",
        DataType::UInt8 => "unsignedByte",
        DataType::UInt16 => "unsignedShort",
        DataType::UInt32 => "unsignedInt",
        DataType::UInt64 => "unsignedLong",
        DataType::Float16 | DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "decimal",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "base64Binary",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "dateTimeStamp",
        DataType::Timestamp(_, None) => "dateTime",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Duration(_) | DataType::Interval(_) => "duration",
        DataType::Dictionary(_, value) => {
            return xsd_datatype(&Field::new(field.name(), (**value).clone(), true));
        }
        _ => return iri(CSVW, "JSON"),
    };
    xsd(local)
}

fn arrow_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("Timestamp({unit}, {tz})"),
                None => format!("Timestamp({unit})"),
            }
        }
        other => other.to_string(),
    }
}

/// The OGC IRI of a CRS written `AUTHORITY:CODE`.
fn crs_iri(crs: &str) -> Option<String> {
    let (authority, code) = crs.split_once(':')?;
    match authority {
        "OGC" => Some(format!("http://www.opengis.net/def/crs/OGC/1.3/{code}")),
        "EPSG" if code.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("http://www.opengis.net/def/crs/EPSG/0/{code}"))
        }
        _ => None,
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
    let ids = Iris::new(&catalog.base_url);
    let mut g = Graph::default();
    let mut invalid = Vec::new();
    let none = DatasetConfig::default();

    let cat: NamedOrBlankNode = NamedNode::new_unchecked(ids.catalog()).into();
    g.a(cat.clone(), iri(DCAT, "Catalog"));
    g.add(cat.clone(), iri(DCT, "title"), text(&catalog.title));
    g.add(
        cat.clone(),
        iri(DCT, "description"),
        text(&catalog.description),
    );
    g.add(cat.clone(), iri(DCT, "identifier"), text(&ids.catalog()));
    g.agent(&cat, iri(DCT, "publisher"), &catalog.publisher);
    g.agent(&cat, iri(DCT, "creator"), &catalog.creator);
    g.contact(&cat, "catalog", &catalog.contact_point);
    g.typed(
        &cat,
        iri(DCT, "license"),
        &catalog.license,
        iri(DCT, "LicenseDocument"),
    );
    g.typed(
        &cat,
        iri(DCT, "conformsTo"),
        vocab::DCAT_AP_NL,
        iri(DCT, "Standard"),
    );
    let scheme = NamedNode::new_unchecked(vocab::theme_scheme());
    g.a(scheme.clone(), iri(SKOS, "ConceptScheme"));
    g.add(
        scheme.clone(),
        iri(DCT, "title"),
        Literal::new_language_tagged_literal_unchecked("Data theme", "en"),
    );
    g.add(cat.clone(), iri(DCAT, "themeTaxonomy"), scheme);
    for language in &catalog.languages {
        g.typed(
            &cat,
            iri(DCT, "language"),
            language,
            iri(DCT, "LinguisticSystem"),
        );
    }
    if let Some(homepage) = &catalog.homepage {
        g.typed(&cat, iri(FOAF, "homepage"), homepage, iri(FOAF, "Document"));
    }
    for place in &catalog.spatial {
        g.typed(&cat, iri(DCT, "spatial"), place, iri(DCT, "Location"));
    }

    // The two data services: Flight SQL for the data, SPARQL for this catalog.
    let flight: NamedOrBlankNode = NamedNode::new_unchecked(ids.flight_service()).into();
    let sparql: NamedOrBlankNode = NamedNode::new_unchecked(ids.sparql_service()).into();
    for (service, title, description, endpoint, endpoint_description, standard) in [
        (
            &flight,
            format!("Arrow Flight SQL service of {}", catalog.title),
            format!(
                "SQL over Arrow Flight SQL: every dataset of this catalog is a table \
                 {}.public.<name>. Connect with an ADBC, JDBC or ODBC Flight SQL driver.",
                node.name
            ),
            node.flight_endpoint_url.clone(),
            ids.flight_description(),
            vocab::FLIGHT_SQL_BINDING,
        ),
        (
            &sparql,
            format!("SPARQL endpoint of {}", catalog.title),
            "SPARQL 1.1 queries over this catalog (DCAT-AP-NL 3.0).".to_string(),
            ids.sparql_endpoint(),
            ids.sparql_endpoint(),
            vocab::SPARQL_PROTOCOL,
        ),
    ] {
        g.a(service.clone(), iri(DCAT, "DataService"));
        g.add(service.clone(), iri(DCT, "title"), text(&title));
        g.add(service.clone(), iri(DCT, "description"), text(&description));
        if let NamedOrBlankNode::NamedNode(n) = service {
            g.add(service.clone(), iri(DCT, "identifier"), text(n.as_str()));
        }
        g.add(
            service.clone(),
            iri(DCAT, "endpointURL"),
            NamedNode::new_unchecked(endpoint),
        );
        g.add(
            service.clone(),
            iri(DCAT, "endpointDescription"),
            NamedNode::new_unchecked(endpoint_description),
        );
        g.typed(
            service,
            iri(DCT, "conformsTo"),
            standard,
            iri(DCT, "Standard"),
        );
        g.agent(service, iri(DCT, "publisher"), &catalog.publisher);
        g.agent(service, iri(DCT, "creator"), &catalog.creator);
        g.contact(service, "catalog", &catalog.contact_point);
        g.typed(
            service,
            iri(DCT, "license"),
            &catalog.license,
            iri(DCT, "LicenseDocument"),
        );
        g.typed(
            service,
            iri(DCT, "accessRights"),
            &catalog.access_rights.iri(),
            iri(DCT, "RightsStatement"),
        );
        for code in &catalog.themes {
            g.theme(service, code);
        }
        for language in &catalog.languages {
            g.typed(
                service,
                iri(DCT, "language"),
                language,
                iri(DCT, "LinguisticSystem"),
            );
        }
        for keyword in &catalog.keywords {
            g.add(service.clone(), iri(DCAT, "keyword"), text(keyword));
        }
        g.add(cat.clone(), iri(DCAT, "service"), service.clone());
    }
    for (standard, title) in [
        (
            vocab::FLIGHT_SQL_BINDING,
            "Urban Data Node: Arrow Flight SQL binding",
        ),
        (vocab::SPARQL_PROTOCOL, "SPARQL 1.1 Protocol"),
        (vocab::DCAT_AP_NL, "DCAT-AP-NL 3.0"),
    ] {
        g.add(
            NamedNode::new_unchecked(standard),
            iri(DCT, "title"),
            text(title),
        );
    }

    let mut newest: Option<Literal> = None;
    for table in tables {
        let config = datasets.get(&table.name).unwrap_or(&none);
        let meta = effective(catalog, node, &table.name, config);
        let ds: NamedOrBlankNode = NamedNode::new_unchecked(ids.dataset(&table.name)).into();
        let sql_name = format!("{}.public.{}", node.name, table.name);
        g.add(cat.clone(), iri(DCAT, "dataset"), ds.clone());
        g.add(flight.clone(), iri(DCAT, "servesDataset"), ds.clone());
        g.a(ds.clone(), iri(DCAT, "Dataset"));
        g.add(ds.clone(), iri(DCT, "title"), text(&meta.title));
        g.add(ds.clone(), iri(DCT, "description"), text(&meta.description));
        g.add(
            ds.clone(),
            iri(DCT, "identifier"),
            text(&ids.dataset(&table.name)),
        );
        g.add(ds.clone(), iri(UDN, "sqlTable"), text(&sql_name));
        // DCAT-AP puts the licence on the distribution; harvesters such as ckanext-dcat read
        // it on the dataset too, so it is stated on both.
        g.typed(
            &ds,
            iri(DCT, "license"),
            meta.license,
            iri(DCT, "LicenseDocument"),
        );
        for keyword in meta.keywords {
            g.add(ds.clone(), iri(DCAT, "keyword"), text(keyword));
        }
        for code in meta.themes {
            g.theme(&ds, code);
        }
        g.agent(&ds, iri(DCT, "publisher"), &meta.publisher);
        g.agent(&ds, iri(DCT, "creator"), &meta.creator);
        g.contact(&ds, &meta.contact.0, &meta.contact.1);
        g.typed(
            &ds,
            iri(DCT, "accessRights"),
            &meta.access_rights,
            iri(DCT, "RightsStatement"),
        );
        for place in meta.spatial {
            g.typed(&ds, iri(DCT, "spatial"), place, iri(DCT, "Location"));
        }
        for language in &catalog.languages {
            g.typed(
                &ds,
                iri(DCT, "language"),
                language,
                iri(DCT, "LinguisticSystem"),
            );
        }
        if let Some(page) = &config.landing_page {
            g.typed(&ds, iri(DCAT, "landingPage"), page, iri(FOAF, "Document"));
        }
        if let Some(frequency) = &config.update_frequency {
            g.typed(
                &ds,
                iri(DCT, "accrualPeriodicity"),
                &vocab::frequency(frequency).expect("frequencies are checked at load"),
                iri(DCT, "Frequency"),
            );
        }
        let period = match &config.temporal {
            Some(TemporalConfig { start, end }) => Some((start.clone(), end.clone())),
            None => table
                .temporal
                .as_ref()
                .map(|(s, e)| (Some(s.clone()), Some(e.clone()))),
        };
        if let Some((start, end)) = period {
            let node = BlankNode::new_unchecked(format!("temporal-{}", segment(&table.name)));
            g.a(node.clone(), iri(DCT, "PeriodOfTime"));
            for (p, value) in [("startDate", start), ("endDate", end)] {
                if let Some(literal) = value.as_deref().and_then(temporal_literal) {
                    g.add(node.clone(), iri(DCAT, p), literal);
                }
            }
            g.add(ds.clone(), iri(DCT, "temporal"), node);
        }
        let modified = config
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
            });
        if let Some(modified) = &modified {
            g.add(ds.clone(), iri(DCT, "modified"), modified.clone());
            if newest.as_ref().is_none_or(|n| n.value() < modified.value()) {
                newest = Some(modified.clone());
            }
        }
        if let Some(rows) = table.row_count {
            g.add(ds.clone(), iri(UDN, "rowCount"), integer(rows));
        }

        // The distribution: the table as Flight SQL serves it.
        let dist: NamedOrBlankNode = NamedNode::new_unchecked(ids.distribution(&table.name)).into();
        g.add(ds.clone(), iri(DCAT, "distribution"), dist.clone());
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
                "Query with SQL over Arrow Flight SQL at {}: SELECT * FROM {sql_name}",
                node.flight_endpoint_url
            )),
        );
        g.add(
            dist.clone(),
            iri(DCAT, "accessURL"),
            NamedNode::new_unchecked(&node.flight_endpoint_url),
        );
        g.add(dist.clone(), iri(DCAT, "accessService"), flight.clone());
        g.typed(
            &dist,
            iri(DCT, "license"),
            meta.license,
            iri(DCT, "LicenseDocument"),
        );
        g.typed(
            &dist,
            iri(DCT, "format"),
            vocab::ARROW_STREAM_MEDIA_TYPE,
            iri(DCT, "MediaTypeOrExtent"),
        );
        g.typed(
            &dist,
            iri(DCAT, "mediaType"),
            vocab::ARROW_STREAM_MEDIA_TYPE,
            iri(DCT, "MediaType"),
        );
        g.typed(
            &dist,
            iri(DCT, "conformsTo"),
            vocab::FLIGHT_SQL_BINDING,
            iri(DCT, "Standard"),
        );
        g.add(dist.clone(), iri(UDN, "sqlTable"), text(&sql_name));
        if let Some(bytes) = table.byte_size {
            g.add(dist.clone(), iri(DCAT, "byteSize"), byte_size(bytes));
        }
        if let Some(rows) = table.row_count {
            g.add(dist.clone(), iri(UDN, "rowCount"), integer(rows));
        }
        if let Some(modified) = &modified {
            g.add(dist.clone(), iri(DCT, "modified"), modified.clone());
        }
        for language in &catalog.languages {
            g.typed(
                &dist,
                iri(DCT, "language"),
                language,
                iri(DCT, "LinguisticSystem"),
            );
        }
        if let Some(file_type) = table.source_format.as_deref().and_then(vocab::file_type) {
            g.typed(
                &dist,
                iri(UDN, "sourceFormat"),
                &file_type,
                iri(DCT, "MediaTypeOrExtent"),
            );
        }

        // Columns, in CSVW.
        let schema_node: NamedOrBlankNode =
            NamedNode::new_unchecked(ids.table_schema(&table.name)).into();
        g.add(dist.clone(), iri(CSVW, "tableSchema"), schema_node.clone());
        g.a(schema_node.clone(), iri(CSVW, "Schema"));
        for name in config.columns.keys() {
            if table.schema.field_with_name(name).is_err() {
                let columns: Vec<_> = table
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                invalid.push(format!(
                    "datasets.{}.columns.{name}: the table has no column '{name}' (columns: {})",
                    table.name,
                    columns.join(", ")
                ));
            }
        }
        if let Some(column) = &config.temporal_column
            && table.schema.field_with_name(column).is_err()
        {
            invalid.push(format!(
                "datasets.{}.temporal_column: the table has no column '{column}'",
                table.name
            ));
        }
        for (index, field) in table.schema.fields().iter().enumerate() {
            let col: NamedOrBlankNode =
                NamedNode::new_unchecked(ids.column(&table.name, field.name())).into();
            g.add(schema_node.clone(), iri(CSVW, "column"), col.clone());
            g.a(col.clone(), iri(CSVW, "Column"));
            g.add(col.clone(), iri(CSVW, "name"), text(field.name()));
            g.add(col.clone(), iri(CSVW, "datatype"), xsd_datatype(field));
            g.add(
                col.clone(),
                iri(CSVW, "required"),
                Literal::from(!field.is_nullable()),
            );
            g.add(
                col.clone(),
                iri(UDN, "columnIndex"),
                integer(index as u64 + 1),
            );
            g.add(
                col.clone(),
                iri(UDN, "arrowType"),
                text(&arrow_type_name(field.data_type())),
            );
            if let Some(crs) = table
                .schema
                .metadata()
                .get("geo:crs")
                .filter(|_| xsd_datatype(field) == iri(GEO, "wkbLiteral"))
                .and_then(|c| crs_iri(c))
            {
                g.add(col.clone(), iri(UDN, "crs"), NamedNode::new_unchecked(crs));
            }
            if let Some(meta) = config.columns.get(field.name()) {
                if let Some(title) = &meta.title {
                    g.add(col.clone(), iri(CSVW, "title"), text(title));
                }
                if let Some(description) = &meta.description {
                    g.add(col.clone(), iri(DCT, "description"), text(description));
                }
                if let Some(unit) = &meta.unit {
                    g.add(
                        col.clone(),
                        iri(QUDT, "unit"),
                        NamedNode::new_unchecked(unit),
                    );
                }
            }
        }
    }
    if let Some(newest) = newest {
        g.add(cat.clone(), iri(DCT, "modified"), newest);
    }
    if invalid.is_empty() {
        Ok(g.into_sorted())
    } else {
        Err(MetadataError::Incomplete {
            missing: Vec::new(),
            invalid,
        })
    }
}
