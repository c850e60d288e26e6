//! The access policy: per dataset, who may read it and which of its columns.
//!
//! Modelled on Trino's file-based access control: per dataset an ordered list of rules, the
//! first rule whose conditions match the caller's claims decides, and what no rule grants is
//! denied. A dataset can be declared public (readable without a token) and bound to purposes
//! (the token's `purpose` claim must be one of them).
//!
//! ```toml
//! [[dataset]]
//! name = "air_quality"
//! public = true
//!
//! [[dataset]]
//! name = "traffic_counts"
//! purposes = ["mobility-planning", "research"]
//!
//!   [[dataset.rule]]
//!   groups = ["mobility"]
//!   access = "raw"
//!
//!   [[dataset.rule]]
//!   organisations = ["gemeente-utrecht"]
//!   access = "raw"
//!   deny_columns = ["segment_id"]
//!
//!   # Everyone else in a municipality: their own city's rows, street segments coarsened.
//!   [[dataset.rule]]
//!   roles = ["municipal-analyst"]
//!   access = "raw"
//!   row_filter = "municipality = $org"
//!   masks = { segment_id = "segment_id / 100 * 100" }
//! ```
//!
//! Row filters and masks are SQL expressions over the dataset's columns with the caller's
//! claims bound as parameters (see [`crate::guard`]); [`Policy::check`] compiles every one of
//! them against the dataset at startup.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::SessionState;
use polder_flight_sql::Error;
use serde::Deserialize;

use crate::auth::{Claims, Identity};
use crate::error::PolicyError;
use crate::guard;
use crate::perturb::{PERTURBABLE, PerturbationSpec};

/// A node's access policy, checked against its datasets.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    datasets: BTreeMap<String, DatasetPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default, rename = "dataset")]
    datasets: Vec<DatasetPolicy>,
}

/// The policy of one dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetPolicy {
    /// The table's name on this node.
    pub name: String,
    /// Readable by anyone, also without a token, with all its columns.
    #[serde(default)]
    pub public: bool,
    /// Holds personal data: a query on it is refused when the audit log cannot record it.
    #[serde(default)]
    pub personal: bool,
    /// Left out of the node's public metadata (the DCAT catalog, SPARQL, `/readyz`); callers
    /// the policy grants it still read it.
    #[serde(default)]
    pub hidden: bool,
    /// When not empty, a caller's token must carry one of these as its `purpose` claim.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// Ordered rules; the first that matches the caller decides.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// What aggregate-only access (`access = "aggregate"`) allows.
    pub aggregate: Option<AggregateSpec>,
}

/// Aggregate-only access: rows never leave the node, only groups of at least
/// `min_group_size` distinct privacy units.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// The column that identifies a person (or another privacy unit).
    pub unit: String,
    /// The least number of distinct units a released group describes.
    pub min_group_size: u64,
    /// Columns a query may group by (also inside functions such as `date_trunc`).
    pub dimensions: Vec<String>,
    /// Aggregate functions a query may use, e.g. `["count", "sum", "avg"]`.
    pub functions: Vec<String>,
    /// What a query that would release a smaller group gets.
    #[serde(default)]
    pub on_violation: Violation,
    /// Perturbation of every released value by its cell key (see [`crate::perturb`]).
    #[serde(default)]
    pub perturbation: Option<PerturbationSpec>,
}

/// What happens to a query whose answer would hold a group below the minimum size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Violation {
    /// The small groups are left out of the answer.
    #[default]
    Suppress,
    /// The query fails with PERMISSION_DENIED.
    Refuse,
}

/// One rule: conditions on the caller's claims, and what it grants.
///
/// Each condition given must hold (a caller matches a list when one of its values is in it); a
/// rule without conditions matches every authenticated caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `sub` values.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Values of the `groups` claim.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Values of the `roles` claim.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Values of the `org` claim.
    #[serde(default)]
    pub organisations: Vec<String>,
    /// What the rule grants.
    pub access: Access,
    /// Columns the caller does not see at all (not in metadata, not in `SELECT *`).
    #[serde(default)]
    pub deny_columns: Vec<String>,
    /// Columns the caller sees masked: per column, the SQL expression computed from the stored
    /// row that the caller gets instead of the stored value (`"NULL"`, `"left(postcode, 4)"`).
    #[serde(default)]
    pub masks: BTreeMap<String, String>,
    /// The rows the caller sees: a SQL condition over the dataset's columns, with the caller's
    /// claims as parameters (`"municipality = $org"`, `"array_has($groups, district)"`).
    pub row_filter: Option<String>,
}

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Rows as stored, minus the denied columns.
    Raw,
    /// Only aggregates over groups of at least the minimum size (see [`AggregateSpec`]).
    Aggregate,
    /// Nothing.
    Deny,
}

impl Rule {
    fn matches(&self, claims: &Claims) -> bool {
        let any = |wanted: &[String], have: &[&str]| {
            wanted.is_empty() || have.iter().any(|h| wanted.iter().any(|w| w == h))
        };
        let groups: Vec<&str> = claims.groups.iter().map(String::as_str).collect();
        let roles: Vec<&str> = claims.roles.iter().map(String::as_str).collect();
        let org: Vec<&str> = claims.org.iter().map(String::as_str).collect();
        any(&self.subjects, &[claims.sub.as_str()])
            && any(&self.groups, &groups)
            && any(&self.roles, &roles)
            && any(&self.organisations, &org)
    }
}

/// What the policy decides for one caller and one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The caller reads the dataset's rows, restricted as the rule says.
    Read {
        /// Columns removed from the caller's view.
        denied_columns: Vec<String>,
        /// Masked columns and their mask expressions (claims unbound).
        masks: BTreeMap<String, String>,
        /// The condition every row the caller sees satisfies (claims unbound).
        row_filter: Option<String>,
        /// The rule that granted it (1-based); none when the dataset is public.
        rule: Option<usize>,
    },
    /// The caller reads only aggregates of the dataset.
    Aggregate {
        /// What may be grouped and computed, and the minimum group size.
        spec: AggregateSpec,
        /// The condition every row aggregated for the caller satisfies (claims unbound).
        row_filter: Option<String>,
        /// The rule that granted it (1-based).
        rule: usize,
    },
    /// The caller may not read the dataset; the error says why.
    Refuse(Error),
}

impl Policy {
    /// Loads a policy file; unknown keys and wrong types fail with the line.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, base).map_err(|e| match e {
            PolicyError::Parse { reason, .. } => PolicyError::Parse {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses a policy document; files it names are relative to the working directory.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        Self::parse_in(text, Path::new("."))
    }

    /// Parses a policy document whose files are relative to `base`.
    fn parse_in(text: &str, base: &Path) -> Result<Self, PolicyError> {
        let mut file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: "<inline>".into(),
            reason: e.to_string(),
        })?;
        for dataset in &mut file.datasets {
            dataset.load_perturbation(base)?;
        }
        let mut datasets = BTreeMap::new();
        for dataset in file.datasets {
            if let Some(problem) = dataset.problem() {
                return Err(PolicyError::Invalid(problem));
            }
            let name = dataset.name.clone();
            if datasets.insert(name.clone(), dataset).is_some() {
                return Err(PolicyError::Invalid(format!(
                    "dataset '{name}' has two policies"
                )));
            }
        }
        Ok(Self { datasets })
    }

    /// Checks the policy against the node's tables: every dataset and every denied or masked
    /// column must exist, so that a typo cannot leave a column readable, and every row filter
    /// and mask must compile against its dataset in `state` (known columns, functions and
    /// parameters; a condition for a filter, the column's type for a mask).
    pub fn check(
        &self,
        tables: &BTreeMap<String, SchemaRef>,
        state: &SessionState,
    ) -> Result<(), PolicyError> {
        let aggregate_functions: Vec<&String> = state.aggregate_functions().keys().collect();
        for (name, dataset) in &self.datasets {
            let Some(schema) = tables.get(name) else {
                let known: Vec<&str> = tables.keys().map(String::as_str).collect();
                return Err(PolicyError::Invalid(format!(
                    "dataset '{name}' is not served by this node (its tables: {})",
                    known.join(", ")
                )));
            };
            if let Some(spec) = &dataset.aggregate {
                for column in std::iter::once(&spec.unit).chain(&spec.dimensions) {
                    if schema.field_with_name(column).is_err() {
                        return Err(PolicyError::Invalid(format!(
                            "the aggregate access of dataset '{name}' names column '{column}', which the dataset does not have"
                        )));
                    }
                }
                for function in &spec.functions {
                    if !aggregate_functions.contains(&function) {
                        return Err(PolicyError::Invalid(format!(
                            "the aggregate access of dataset '{name}' allows function '{function}', which is not an aggregate function of this node"
                        )));
                    }
                }
            }
            for (index, rule) in dataset.rules.iter().enumerate() {
                let invalid = |what: String| {
                    PolicyError::Invalid(format!("rule {} of dataset '{name}' {what}", index + 1))
                };
                for column in &rule.deny_columns {
                    if schema.field_with_name(column).is_err() {
                        return Err(invalid(format!(
                            "denies column '{column}', which the dataset does not have"
                        )));
                    }
                }
                for (column, mask) in &rule.masks {
                    if schema.field_with_name(column).is_err() {
                        return Err(invalid(format!(
                            "masks column '{column}', which the dataset does not have"
                        )));
                    }
                    guard::check_mask(state, schema, column, mask).map_err(|e| {
                        invalid(format!(
                            "masks column '{column}' with '{mask}': {}",
                            plain(&e)
                        ))
                    })?;
                }
                if let Some(filter) = &rule.row_filter {
                    guard::check_row_filter(state, schema, filter).map_err(|e| {
                        invalid(format!("has row filter '{filter}': {}", plain(&e)))
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Whether anyone may read something without a token.
    pub fn has_public_datasets(&self) -> bool {
        self.datasets.values().any(|d| d.public)
    }

    /// What `identity` may do with the dataset `name`.
    pub fn decide(&self, identity: &Identity, name: &str) -> Decision {
        let all = Decision::Read {
            denied_columns: vec![],
            masks: BTreeMap::new(),
            row_filter: None,
            rule: None,
        };
        let dataset = self.datasets.get(name);
        let claims = match identity {
            Identity::Anonymous => {
                return match dataset {
                    Some(d) if d.public => all,
                    _ => Decision::Refuse(Error::Unauthenticated(format!(
                        "unauthenticated: dataset '{name}' is not public; a bearer token is required"
                    ))),
                };
            }
            Identity::User { claims, .. } => claims,
        };
        let Some(dataset) = dataset else {
            return refuse(name, "no rule of the access policy grants it");
        };
        if !dataset.purposes.is_empty() {
            let ok = claims
                .purpose
                .as_ref()
                .is_some_and(|p| dataset.purposes.contains(p));
            if !ok {
                return refuse(
                    name,
                    &format!(
                        "it may be read only for the purposes {}, and the token's purpose claim is none of them",
                        dataset.purposes.join(", ")
                    ),
                );
            }
        }
        match dataset.rules.iter().position(|r| r.matches(claims)) {
            Some(index) => {
                let rule = &dataset.rules[index];
                match rule.access {
                    Access::Raw => Decision::Read {
                        denied_columns: rule.deny_columns.clone(),
                        masks: rule.masks.clone(),
                        row_filter: rule.row_filter.clone(),
                        rule: Some(index + 1),
                    },
                    Access::Aggregate => match &dataset.aggregate {
                        Some(spec) => Decision::Aggregate {
                            spec: spec.clone(),
                            row_filter: rule.row_filter.clone(),
                            rule: index + 1,
                        },
                        // Checked at load; fail closed all the same.
                        None => refuse(name, "its aggregate access is not configured"),
                    },
                    Access::Deny => refuse(name, &format!("rule {} denies it", index + 1)),
                }
            }
            None if dataset.public => all,
            None => refuse(name, "no rule of the access policy grants it"),
        }
    }

    /// Whether the policy keeps the dataset `name` out of the node's public metadata.
    pub fn is_hidden(&self, name: &str) -> bool {
        self.datasets.get(name).is_some_and(|d| d.hidden)
    }

    /// Whether the policy marks the dataset `name` as personal data.
    pub fn is_personal(&self, name: &str) -> bool {
        self.datasets.get(name).is_some_and(|d| d.personal)
    }
}

/// A DataFusion error's message; a planning error's without its "Error during planning: "
/// kind prefix, which says nothing to the author of a policy file.
fn plain(error: &datafusion::error::DataFusionError) -> String {
    match error {
        datafusion::error::DataFusionError::Plan(message) => message.clone(),
        other => other.to_string(),
    }
}

fn refuse(name: &str, why: &str) -> Decision {
    Decision::Refuse(Error::Forbidden(format!(
        "access to dataset '{name}' denied: {why}"
    )))
}

impl DatasetPolicy {
    /// Reads the key of the dataset's cell-key perturbation, if it has one, and checks that
    /// every aggregate function it allows can be perturbed.
    fn load_perturbation(&mut self, base: &Path) -> Result<(), PolicyError> {
        let Some(spec) = self.aggregate.as_mut() else {
            return Ok(());
        };
        let Some(perturbation) = spec.perturbation.as_mut() else {
            return Ok(());
        };
        if let Err(source) = perturbation.load_secret(base) {
            return Err(PolicyError::Perturbation {
                dataset: self.name.clone(),
                source,
            });
        }
        if let Some(function) = spec
            .functions
            .iter()
            .find(|f| !PERTURBABLE.contains(&f.to_lowercase().as_str()))
        {
            return Err(PolicyError::Invalid(format!(
                "dataset '{}': aggregate.functions lists '{function}', which cannot be perturbed: with perturbation only {} are allowed",
                self.name,
                PERTURBABLE.join(", ")
            )));
        }
        Ok(())
    }

    /// What is wrong with the dataset's policy on its own (without the node's tables), if
    /// anything: the first problem, naming the dataset.
    fn problem(&self) -> Option<String> {
        let aggregated = self.rules.iter().any(|r| r.access == Access::Aggregate);
        if let Some(problem) = self.audience_problem().or_else(|| self.aggregate_problem()) {
            return Some(problem);
        }
        for (index, rule) in self.rules.iter().enumerate() {
            if let Some(problem) = rule.problem() {
                return Some(format!(
                    "rule {} of dataset '{}': {problem}",
                    index + 1,
                    self.name
                ));
            }
        }
        (self.public && aggregated).then(|| {
            format!(
                "dataset '{}' is public, so its raw rows are readable by anyone; aggregate-only rules would protect nothing",
                self.name
            )
        })
    }

    /// A contradiction between `public`, `hidden` and `purposes`.
    fn audience_problem(&self) -> Option<String> {
        let name = &self.name;
        if self.public && !self.purposes.is_empty() {
            Some(format!(
                "dataset '{name}' is public and bound to purposes; anonymous callers have no purpose"
            ))
        } else if self.public && self.hidden {
            Some(format!(
                "dataset '{name}' is public and hidden; a public dataset is listed in the catalog"
            ))
        } else if self.purposes.iter().any(|p| p.trim().is_empty()) {
            Some(format!("dataset '{name}' lists an empty purpose"))
        } else {
            None
        }
    }

    /// An aggregate rule without an aggregate section, or an aggregate section that protects
    /// nothing.
    fn aggregate_problem(&self) -> Option<String> {
        let name = &self.name;
        let aggregated = self.rules.iter().any(|r| r.access == Access::Aggregate);
        match &self.aggregate {
            None if aggregated => Some(format!(
                "dataset '{name}' has a rule with access = \"aggregate\" but no [dataset.aggregate] section"
            )),
            Some(spec) if spec.min_group_size < 2 => Some(format!(
                "dataset '{name}': aggregate.min_group_size must be at least 2"
            )),
            Some(spec) if spec.dimensions.contains(&spec.unit) => Some(format!(
                "dataset '{name}': the privacy unit '{}' cannot be a dimension",
                spec.unit
            )),
            _ => None,
        }
    }
}

impl Rule {
    /// What is wrong with the rule on its own, if anything.
    fn problem(&self) -> Option<String> {
        if self.access != Access::Raw && !self.masks.is_empty() {
            Some("masks apply to raw access only".to_string())
        } else if self.access == Access::Deny && self.row_filter.is_some() {
            Some("a rule with access = \"deny\" has no rows to filter".to_string())
        } else if let Some(column) = self.masks.keys().find(|c| self.deny_columns.contains(c)) {
            Some(format!("column '{column}' is both denied and masked"))
        } else if self
            .row_filter
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            Some("the row filter is empty".to_string())
        } else {
            self.masks
                .iter()
                .find(|(_, m)| m.trim().is_empty())
                .map(|(c, _)| format!("the mask of column '{c}' is empty"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    const POLICY: &str = r#"
        [[dataset]]
        name = "air_quality"
        public = true

        [[dataset]]
        name = "traffic_counts"
        purposes = ["research"]

          [[dataset.rule]]
          subjects = ["mallory"]
          access = "deny"

          [[dataset.rule]]
          groups = ["mobility", "analysts"]
          access = "raw"

          [[dataset.rule]]
          organisations = ["gemeente-utrecht"]
          access = "raw"
          deny_columns = ["segment_id"]
    "#;

    fn user(sub: &str, groups: &[&str], org: Option<&str>, purpose: Option<&str>) -> Identity {
        Identity::User {
            claims: Arc::new(Claims {
                sub: sub.into(),
                iss: "https://idp.test".into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                roles: vec![],
                org: org.map(Into::into),
                purpose: purpose.map(Into::into),
            }),
            token: Arc::from("t"),
        }
    }

    fn read(columns: &[&str], rule: Option<usize>) -> Decision {
        Decision::Read {
            denied_columns: columns.iter().map(|c| c.to_string()).collect(),
            masks: BTreeMap::new(),
            row_filter: None,
            rule,
        }
    }

    #[test]
    fn first_matching_rule_decides_and_default_is_deny() {
        let policy = Policy::parse(POLICY).unwrap();
        let analyst = user("alice", &["analysts"], None, Some("research"));
        assert_eq!(
            policy.decide(&analyst, "traffic_counts"),
            read(&[], Some(2))
        );
        let clerk = user("bob", &[], Some("gemeente-utrecht"), Some("research"));
        assert_eq!(
            policy.decide(&clerk, "traffic_counts"),
            read(&["segment_id"], Some(3))
        );
        // Listed first, the deny rule wins over the group grant.
        let mallory = user("mallory", &["analysts"], None, Some("research"));
        assert!(matches!(
            policy.decide(&mallory, "traffic_counts"),
            Decision::Refuse(Error::Forbidden(m)) if m.contains("rule 1")
        ));
        // No rule matches; a dataset without policy; the wrong or no purpose.
        let stranger = user("eve", &["other"], None, Some("research"));
        assert!(matches!(
            policy.decide(&stranger, "traffic_counts"),
            Decision::Refuse(Error::Forbidden(_))
        ));
        assert!(matches!(
            policy.decide(&analyst, "neighbourhoods"),
            Decision::Refuse(Error::Forbidden(_))
        ));
        for purpose in [None, Some("marketing")] {
            let analyst = user("alice", &["analysts"], None, purpose);
            assert!(matches!(
                policy.decide(&analyst, "traffic_counts"),
                Decision::Refuse(Error::Forbidden(m)) if m.contains("purposes research")
            ));
        }
    }

    #[test]
    fn anonymous_callers_read_public_datasets_only() {
        let policy = Policy::parse(POLICY).unwrap();
        assert!(policy.has_public_datasets());
        assert_eq!(
            policy.decide(&Identity::Anonymous, "air_quality"),
            read(&[], None)
        );
        assert!(matches!(
            policy.decide(&Identity::Anonymous, "traffic_counts"),
            Decision::Refuse(Error::Unauthenticated(_))
        ));
        // Authenticated callers no rule matches read a public dataset too.
        let stranger = user("eve", &[], None, None);
        assert_eq!(policy.decide(&stranger, "air_quality"), read(&[], None));
    }

    #[test]
    fn refuses_bad_policies() {
        for (text, expected) in [
            ("[[dataset]]\nname = \"a\"\nsecret = true", "unknown field"),
            (
                "[[dataset]]\nname = \"a\"\n[[dataset.rule]]\naccess = \"aggregate-ish\"",
                "unknown variant",
            ),
            (
                "[[dataset]]\nname = \"a\"\n[[dataset.rule]]\ngroups = \"x\"\naccess = \"raw\"",
                "invalid type",
            ),
            (
                "[[dataset]]\nname = \"a\"\npublic = true\npurposes = [\"x\"]",
                "public and bound to purposes",
            ),
            (
                "[[dataset]]\nname = \"a\"\n[[dataset]]\nname = \"a\"",
                "two policies",
            ),
            (
                "[[dataset]]\nname = \"a\"\npublic = true\nhidden = true",
                "public and hidden",
            ),
        ] {
            let err = Policy::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn checks_datasets_and_columns_against_the_node() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("segment_id", DataType::Int64, false),
            Field::new("count", DataType::Int64, false),
        ]));
        let mut tables = BTreeMap::new();
        tables.insert("traffic_counts".to_string(), schema.clone());
        tables.insert("air_quality".to_string(), schema);
        let state = datafusion::prelude::SessionContext::new().state();
        Policy::parse(POLICY)
            .unwrap()
            .check(&tables, &state)
            .unwrap();

        let typo = POLICY.replace("\"segment_id\"", "\"segmentid\"");
        let err = Policy::parse(&typo)
            .unwrap()
            .check(&tables, &state)
            .unwrap_err();
        assert!(err.to_string().contains("'segmentid'"), "{err}");
        tables.remove("air_quality");
        let err = Policy::parse(POLICY)
            .unwrap()
            .check(&tables, &state)
            .unwrap_err();
        assert!(err.to_string().contains("'air_quality'"), "{err}");
    }

    #[test]
    fn a_row_filter_that_is_no_condition_is_named_without_planner_jargon() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "segment_id",
            DataType::Int64,
            false,
        )]));
        let tables = BTreeMap::from([
            ("traffic_counts".to_string(), schema.clone()),
            ("air_quality".to_string(), schema),
        ]);
        let state = datafusion::prelude::SessionContext::new().state();
        let policy = POLICY.replace(
            "deny_columns = [\"segment_id\"]",
            "row_filter = \"segment_id + 1\"",
        );
        let err = Policy::parse(&policy)
            .unwrap()
            .check(&tables, &state)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has row filter 'segment_id + 1': a row filter must be a condition"),
            "{err}"
        );
        assert!(!err.contains("Error during planning"), "{err}");
    }
}
