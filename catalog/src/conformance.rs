//! The conformance classes of UDN 1.0 (docs/spec.md, "Conformance classes"): what a node may
//! claim, by URI. A node declares its claims on `GET /conformance` and as `dct:conformsTo` of
//! its Flight SQL `dcat:DataService`.

use serde::Serialize;

/// A conformance class of UDN 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConformanceClass {
    /// Datasets as SQL tables over Flight SQL, errors, health and configuration.
    Core,
    /// The DCAT-AP-NL catalog and the SPARQL endpoint.
    Catalog,
    /// Peers as catalogs, pushdown, faithful answers, failures named.
    Federation,
    /// Tokens on every RPC, default deny, rules, policy checks, hidden datasets.
    Security,
    /// Purpose binding, the audit log, aggregate-only access, row filters and masks.
    Privacy,
    /// `/metrics` and W3C trace context.
    Observability,
    /// Spatial SQL: the Simple Features `ST_` functions, CRSs and `ST_Transform`.
    Spatial,
    /// The public sensor register: catalog, residents' page, SQL table.
    Sensors,
}

impl ConformanceClass {
    /// Every class, in the spec's order.
    pub const ALL: [ConformanceClass; 8] = [
        Self::Core,
        Self::Catalog,
        Self::Federation,
        Self::Security,
        Self::Privacy,
        Self::Observability,
        Self::Spatial,
        Self::Sensors,
    ];

    /// The class's short name, as `udn-conformance run --classes` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Catalog => "catalog",
            Self::Federation => "federation",
            Self::Security => "security",
            Self::Privacy => "privacy",
            Self::Observability => "observability",
            Self::Spatial => "spatial",
            Self::Sensors => "sensors",
        }
    }

    /// The class's URI, `https://w3id.org/udn/spec/1.0/conf/<name>`.
    pub fn uri(self) -> String {
        format!("{CONFORMANCE_BASE}{}", self.name())
    }
}

/// Where the URIs of UDN 1.0's conformance classes start.
pub const CONFORMANCE_BASE: &str = "https://w3id.org/udn/spec/1.0/conf/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_uris_are_the_specs() {
        assert_eq!(
            ConformanceClass::Core.uri(),
            "https://w3id.org/udn/spec/1.0/conf/core"
        );
        let names: Vec<_> = ConformanceClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "core",
                "catalog",
                "federation",
                "security",
                "privacy",
                "observability",
                "spatial",
                "sensors"
            ]
        );
    }
}
