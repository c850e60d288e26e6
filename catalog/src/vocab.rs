//! Namespaces and the controlled vocabularies the catalog uses.
//!
//! Controlled values (themes, access rights, languages) are the EU Publications Office
//! authority tables that DCAT-AP and DCAT-AP-NL prescribe; the config names them by code.

/// Prefixes written in Turtle and used as the JSON-LD context, in a fixed order.
pub const PREFIXES: &[(&str, &str)] = &[
    ("adms", ADMS),
    ("csvw", CSVW),
    ("dcat", DCAT),
    ("dcatap", DCATAP),
    ("dct", DCT),
    ("foaf", FOAF),
    ("locn", LOCN),
    ("geo", GEO),
    ("qudt", QUDT),
    ("rdf", RDF),
    ("rdfs", RDFS),
    ("sd", SD),
    ("skos", SKOS),
    ("sosa", SOSA),
    ("udn", UDN),
    ("vcard", VCARD),
    ("xsd", XSD),
];

pub const ADMS: &str = "http://www.w3.org/ns/adms#";
pub const CSVW: &str = "http://www.w3.org/ns/csvw#";
pub const DCAT: &str = "http://www.w3.org/ns/dcat#";
pub const DCATAP: &str = "http://data.europa.eu/r5r/";
pub const DCT: &str = "http://purl.org/dc/terms/";
pub const FOAF: &str = "http://xmlns.com/foaf/0.1/";
pub const LOCN: &str = "http://www.w3.org/ns/locn#";
pub const GEO: &str = "http://www.opengis.net/ont/geosparql#";
pub const QUDT: &str = "http://qudt.org/schema/qudt/";
pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
pub const RDFS: &str = "http://www.w3.org/2000/01/rdf-schema#";
pub const SD: &str = "http://www.w3.org/ns/sparql-service-description#";
pub const SKOS: &str = "http://www.w3.org/2004/02/skos/core#";
/// SOSA (W3C/OGC Semantic Sensor Network): sensors and what they observe.
pub const SOSA: &str = "http://www.w3.org/ns/sosa/";
pub const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";

/// The Urban Data Node namespace: the terms `ontology/udn.ttl` defines.
pub const UDN: &str = "https://w3id.org/udn/ns#";
/// The UDN binding of Arrow Flight SQL (a `dct:Standard`, described in `ontology/udn.ttl`).
pub const FLIGHT_SQL_BINDING: &str = "https://w3id.org/udn/spec/flight-sql";
/// The SPARQL 1.1 Protocol, which the catalog's SPARQL service conforms to.
pub const SPARQL_PROTOCOL: &str = "https://www.w3.org/TR/sparql11-protocol/";
/// The application profiles the catalog conforms to.
pub const DCAT_AP_NL: &str = "https://docs.geostandaarden.nl/dcat/dcat-ap-nl30/";
/// IANA media type of the Arrow IPC stream format, in which Flight SQL delivers rows.
pub const ARROW_STREAM_MEDIA_TYPE: &str =
    "https://www.iana.org/assignments/media-types/application/vnd.apache.arrow.stream";

const AUTHORITY: &str = "http://publications.europa.eu/resource/authority/";

/// The EU data-theme vocabulary (a `skos:ConceptScheme`).
pub fn theme_scheme() -> String {
    format!("{AUTHORITY}data-theme")
}

/// EU data themes: code and English label.
pub const THEMES: &[(&str, &str)] = &[
    ("AGRI", "Agriculture, fisheries, forestry and food"),
    ("ECON", "Economy and finance"),
    ("EDUC", "Education, culture and sport"),
    ("ENER", "Energy"),
    ("ENVI", "Environment"),
    ("GOVE", "Government and public sector"),
    ("HEAL", "Health"),
    ("INTR", "International issues"),
    ("JUST", "Justice, legal system and public safety"),
    ("OP_DATPRO", "Provisional data"),
    ("REGI", "Regions and cities"),
    ("SOCI", "Population and society"),
    ("TECH", "Science and technology"),
    ("TRAN", "Transport"),
];

/// The IRI and label of a data-theme code, or None if it is not one.
pub fn theme(code: &str) -> Option<(String, &'static str)> {
    THEMES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(c, label)| (format!("{AUTHORITY}data-theme/{c}"), *label))
}

/// The EU access-right IRI of PUBLIC, RESTRICTED or NON_PUBLIC.
pub fn access_right(code: &str) -> String {
    format!("{AUTHORITY}access-right/{code}")
}

/// Languages accepted by their ISO 639-1 code, with their EU language code.
const LANGUAGES: &[(&str, &str)] = &[
    ("nl", "NLD"),
    ("en", "ENG"),
    ("fy", "FRY"),
    ("de", "DEU"),
    ("fr", "FRA"),
    ("es", "SPA"),
    ("it", "ITA"),
    ("pl", "POL"),
    ("pt", "POR"),
    ("da", "DAN"),
    ("sv", "SWE"),
    ("fi", "FIN"),
];

/// The EU language IRI for an ISO 639-1 code (`nl`) or an EU three-letter code (`NLD`).
pub fn language(code: &str) -> Option<String> {
    let eu = if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        code.to_string()
    } else {
        LANGUAGES
            .iter()
            .find(|(iso, _)| *iso == code)
            .map(|(_, eu)| (*eu).to_string())?
    };
    Some(format!("{AUTHORITY}language/{eu}"))
}

/// The EU file-type IRI of a source format name, when the table has one.
pub fn file_type(format: &str) -> Option<String> {
    let code = match format {
        "parquet" => "PARQUET",
        "csv" => "CSV",
        "tsv" => "TSV",
        "ndjson" => "JSON",
        "geojson" => "GEOJSON",
        "arrow" => "BIN",
        _ => return None,
    };
    Some(format!("{AUTHORITY}file-type/{code}"))
}

/// Codes of the EU frequency vocabulary (`dct:accrualPeriodicity`).
pub const FREQUENCIES: &[&str] = &[
    "1MIN",
    "5MIN",
    "10MIN",
    "15MIN",
    "30MIN",
    "HOURLY",
    "BIHOURLY",
    "TRIHOURLY",
    "12HRS",
    "CONT",
    "UPDATE_CONT",
    "DAILY",
    "DAILY_2",
    "WEEKLY",
    "WEEKLY_2",
    "WEEKLY_3",
    "BIWEEKLY",
    "MONTHLY",
    "MONTHLY_2",
    "MONTHLY_3",
    "BIMONTHLY",
    "QUARTERLY",
    "ANNUAL",
    "ANNUAL_2",
    "ANNUAL_3",
    "BIENNIAL",
    "TRIENNIAL",
    "QUADRENNIAL",
    "QUINQUENNIAL",
    "DECENNIAL",
    "BIDECENNIAL",
    "TRIDECENNIAL",
    "IRREG",
    "NEVER",
    "OTHER",
    "UNKNOWN",
    "AS_NEEDED",
    "NOT_PLANNED",
];

/// The EU frequency IRI of a code, or None if it is not one.
pub fn frequency(code: &str) -> Option<String> {
    FREQUENCIES
        .contains(&code)
        .then(|| format!("{AUTHORITY}frequency/{code}"))
}
