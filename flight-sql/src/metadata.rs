//! The node's self-description for clients: `GetSqlInfo` and `GetXdbcTypeInfo`.

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, XdbcDataType,
};

use crate::error::{Error, Result};
use crate::query::QueryLimits;

/// Facts about this server for `GetSqlInfo`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Product name, e.g. `Polder`.
    pub name: String,
    /// Product version.
    pub version: String,
    /// Query timeout in milliseconds (0: none).
    pub statement_timeout_ms: i32,
    /// Longest SQL text accepted, in bytes.
    pub max_statement_length: i64,
}

impl ServerInfo {
    /// Polder, this version, and the statement limits of `limits`.
    pub fn new(limits: &QueryLimits) -> Self {
        Self {
            name: "Polder".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            statement_timeout_ms: limits.timeout.as_millis().try_into().unwrap_or(i32::MAX),
            max_statement_length: limits.max_query_bytes as i64,
        }
    }
}

/// Builds the `GetSqlInfo` answer: server identity, read-only, and the SQL dialect facts that
/// JDBC/ODBC-style clients ask for.
pub fn sql_info(info: &ServerInfo) -> Result<SqlInfoData> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, info.name.as_str());
    b.append(SqlInfo::FlightSqlServerVersion, info.version.as_str());
    b.append(SqlInfo::FlightSqlServerArrowVersion, arrow_version());
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(
        SqlInfo::FlightSqlServerStatementTimeout,
        info.statement_timeout_ms,
    );
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.append(SqlInfo::SqlMaxStatementLength, info.max_statement_length);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlKeywords, DIALECT_KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.build()
        .map_err(|e| Error::Internal(format!("building SqlInfo: {e}")))
}

/// The Arrow version the node is built with (the one DataFusion uses).
pub fn arrow_version() -> &'static str {
    datafusion::arrow::ARROW_VERSION
}

/// Keywords beyond SQL:2003 that the dialect reserves.
const DIALECT_KEYWORDS: &[&str] = &[
    "EXPLAIN",
    "ANALYZE",
    "VERBOSE",
    "SHOW",
    "QUALIFY",
    "UNNEST",
    "ILIKE",
    "REGEXP_LIKE",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "degrees", "exp", "floor", "ln", "log",
    "log10", "log2", "pi", "power", "radians", "random", "round", "signum", "sin", "sqrt", "tan",
    "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "char_length",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "now",
    "to_timestamp",
    "to_date",
    "make_date",
];

/// Builds the `GetXdbcTypeInfo` answer: the SQL types a client can use in casts and parameters.
pub fn xdbc_type_info() -> Result<XdbcTypeInfoData> {
    let mut b = XdbcTypeInfoDataBuilder::new();
    // (name, type, column size, case sensitive, literal prefix)
    type Row = (
        &'static str,
        XdbcDataType,
        Option<i32>,
        bool,
        Option<&'static str>,
    );
    let types: &[Row] = &[
        ("BOOLEAN", XdbcDataType::XdbcBit, Some(1), false, None),
        ("TINYINT", XdbcDataType::XdbcTinyint, Some(3), false, None),
        ("SMALLINT", XdbcDataType::XdbcSmallint, Some(5), false, None),
        ("INTEGER", XdbcDataType::XdbcInteger, Some(10), false, None),
        ("BIGINT", XdbcDataType::XdbcBigint, Some(19), false, None),
        ("REAL", XdbcDataType::XdbcReal, Some(7), false, None),
        ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), false, None),
        ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), false, None),
        ("VARCHAR", XdbcDataType::XdbcVarchar, None, true, Some("'")),
        (
            "VARBINARY",
            XdbcDataType::XdbcVarbinary,
            None,
            false,
            Some("X'"),
        ),
        (
            "DATE",
            XdbcDataType::XdbcDate,
            Some(10),
            false,
            Some("DATE '"),
        ),
        (
            "TIME",
            XdbcDataType::XdbcTime,
            Some(15),
            false,
            Some("TIME '"),
        ),
        (
            "TIMESTAMP",
            XdbcDataType::XdbcTimestamp,
            Some(26),
            false,
            Some("TIMESTAMP '"),
        ),
    ];
    for (name, data_type, column_size, case_sensitive, prefix) in types {
        let numeric = column_size.is_some() && prefix.is_none() && *name != "BOOLEAN";
        b.append(XdbcTypeInfo {
            type_name: (*name).to_string(),
            data_type: *data_type,
            column_size: *column_size,
            literal_prefix: prefix.map(str::to_string),
            literal_suffix: prefix.map(|_| "'".to_string()),
            create_params: (*name == "DECIMAL")
                .then(|| vec!["precision".to_string(), "scale".to_string()]),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: *case_sensitive,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale: *name == "DECIMAL",
            auto_increment: numeric.then_some(false),
            local_type_name: Some((*name).to_string()),
            minimum_scale: (*name == "DECIMAL").then_some(0),
            maximum_scale: (*name == "DECIMAL").then_some(38),
            sql_data_type: *data_type,
            datetime_subcode: None,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    }
    b.build()
        .map_err(|e| Error::Internal(format!("building XdbcTypeInfo: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_answers() {
        let info = ServerInfo {
            name: "Polder".into(),
            version: "0.1.0".into(),
            statement_timeout_ms: 1000,
            max_statement_length: 1024,
        };
        let data = sql_info(&info).unwrap();
        let batch = data
            .record_batch([SqlInfo::FlightSqlServerName as u32])
            .unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert!(
            xdbc_type_info()
                .unwrap()
                .record_batch(None)
                .unwrap()
                .num_rows()
                >= 13
        );
    }
}
