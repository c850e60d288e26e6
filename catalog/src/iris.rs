//! The IRIs of the catalog's resources, all under the node's base URL.

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

    /// A sensor of the register.
    pub fn sensor(&self, id: &str) -> String {
        format!("{}/sensor/{}", self.base, segment(id))
    }

    /// A property sensors observe, by its name ("PM2.5" is `<base>/property/pm2.5`).
    pub fn observable_property(&self, name: &str) -> String {
        format!(
            "{}/property/{}",
            self.base,
            segment(&name.trim().to_lowercase())
        )
    }

    /// The SPARQL endpoint (its bare GET is the SPARQL service description).
    pub fn sparql_endpoint(&self) -> String {
        format!("{}/sparql", self.base)
    }
}

/// Percent-encodes what may not appear in an IRI path segment.
pub(crate) fn segment(name: &str) -> String {
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
