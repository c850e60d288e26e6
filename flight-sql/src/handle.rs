//! Self-contained statement handles and tickets.
//!
//! A handle carries everything needed to run the statement: the SQL text and, once bound, the
//! parameter rows as Arrow IPC. The node keeps no per-statement state, so any replica behind a
//! load balancer can answer a `GetFlightInfo` or `DoGet` for a handle another replica created.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the handle encoding; a handle of another version is refused with a clear error.
const HANDLE_VERSION: u8 = 1;

/// The decoded content of a statement handle or ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementHandle {
    v: u8,
    /// The SQL text as the client sent it.
    pub sql: String,
    /// Bound parameter rows as an Arrow IPC stream, base64 encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
}

impl StatementHandle {
    /// A handle for `sql` without bound parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            v: HANDLE_VERSION,
            sql: sql.into(),
            params: None,
        }
    }

    /// This handle with `batches` bound as its parameter rows (replacing earlier ones).
    pub fn with_params(&self, batches: &[RecordBatch]) -> Result<Self> {
        let params = match batches.first() {
            None => None,
            Some(first) => {
                let mut buf = Vec::new();
                let mut writer = StreamWriter::try_new(&mut buf, first.schema_ref())?;
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
                drop(writer);
                Some(BASE64.encode(buf))
            }
        };
        Ok(Self {
            v: HANDLE_VERSION,
            sql: self.sql.clone(),
            params,
        })
    }

    /// Whether parameters are bound.
    pub fn has_params(&self) -> bool {
        self.params.is_some()
    }

    /// The bound parameter rows (empty when none are bound).
    pub fn params(&self) -> Result<Vec<RecordBatch>> {
        let Some(encoded) = &self.params else {
            return Ok(vec![]);
        };
        let bytes = BASE64.decode(encoded).map_err(|_| {
            Error::InvalidRequest("malformed statement handle: bad parameters".into())
        })?;
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(|_| {
            Error::InvalidRequest("malformed statement handle: bad parameters".into())
        })?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::InvalidRequest("malformed statement handle: bad parameters".into()))
    }

    /// The handle as opaque bytes for the client.
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a handle always serialises"))
    }

    /// Decodes a handle the client sent back.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let handle: Self = serde_json::from_slice(bytes)
            .map_err(|_| Error::InvalidRequest("malformed statement handle or ticket".into()))?;
        if handle.v != HANDLE_VERSION {
            return Err(Error::InvalidRequest(format!(
                "statement handle of unsupported version {} (this node speaks version {HANDLE_VERSION})",
                handle.v
            )));
        }
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn round_trips_sql_and_parameters() {
        let handle = StatementHandle::new("SELECT $1, $2");
        assert_eq!(StatementHandle::decode(&handle.encode()).unwrap(), handle);

        let batch = RecordBatch::try_from_iter([
            ("0", Arc::new(Int64Array::from(vec![1, 2])) as _),
            ("1", Arc::new(StringArray::from(vec!["a", "b"])) as _),
        ])
        .unwrap();
        let bound = handle.with_params(std::slice::from_ref(&batch)).unwrap();
        let decoded = StatementHandle::decode(&bound.encode()).unwrap();
        assert_eq!(decoded.sql, "SELECT $1, $2");
        assert_eq!(decoded.params().unwrap(), vec![batch]);
    }

    #[test]
    fn refuses_garbage_and_other_versions() {
        assert!(matches!(
            StatementHandle::decode(b"\x00garbage"),
            Err(Error::InvalidRequest(_))
        ));
        assert!(matches!(
            StatementHandle::decode(br#"{"v":9,"sql":"SELECT 1"}"#),
            Err(Error::InvalidRequest(_))
        ));
    }
}
