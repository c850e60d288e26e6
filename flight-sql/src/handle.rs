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
use datafusion::arrow::ipc::{Message, root_as_message};
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
        check_ipc_framing(&bytes)?;
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

/// Checks the framing of the Arrow IPC stream of a handle's parameters before a reader sees
/// it: every message's metadata and body lie within the bytes, every buffer of a batch within
/// its body, and no batch is compressed.
///
/// The handle comes back from the client, and Arrow's stream reader trusts the lengths a
/// message declares: it allocates (and zeroes) metadata and body at their declared sizes, and
/// a compressed buffer at its declared uncompressed size, so a few bytes could make the node
/// allocate gigabytes or abort, and it slices buffers out of a body without checking that they
/// fit (a panic). The node writes parameters uncompressed ([`Self::with_params`]).
fn check_ipc_framing(bytes: &[u8]) -> Result<()> {
    let bad = || Error::InvalidRequest("malformed statement handle: bad parameters".into());
    let mut rest = bytes;
    let take_u32 = |rest: &mut &[u8]| -> Result<usize> {
        let (head, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        *rest = tail;
        Ok(u32::from_le_bytes(*head) as usize)
    };
    while !rest.is_empty() {
        let mut len = take_u32(&mut rest)?;
        if len == 0xFFFF_FFFF {
            // The continuation marker of the current format; the length follows.
            len = take_u32(&mut rest)?;
        }
        if len == 0 {
            // The end-of-stream marker.
            return Ok(());
        }
        let metadata = rest.get(..len).ok_or_else(bad)?;
        rest = &rest[len..];
        let body = ipc_message_fits(metadata, rest.len()).ok_or_else(bad)?;
        rest = &rest[body..];
    }
    Ok(())
}

/// The body length the IPC message `metadata` declares, if its body fits in `available` bytes,
/// every buffer of its batch lies inside that body, and the batch is not compressed (whose
/// declared uncompressed sizes Arrow's reader would allocate unchecked); `None` otherwise.
/// Checked before Arrow's reader sees a message a client sent.
pub(crate) fn ipc_message_fits(metadata: &[u8], available: usize) -> Option<usize> {
    let message = root_as_message(metadata).ok()?;
    let body = usize::try_from(message.bodyLength())
        .ok()
        .filter(|body| *body <= available)?;
    if let Some(batch) = batch_of(&message) {
        if batch.compression().is_some() {
            return None;
        }
        let within_body = |offset: i64, length: i64| {
            offset >= 0 && length >= 0 && offset.saturating_add(length) <= body as i64
        };
        if !batch
            .buffers()
            .is_none_or(|buffers| buffers.iter().all(|b| within_body(b.offset(), b.length())))
        {
            return None;
        }
    }
    Some(body)
}

/// The record batch an IPC message carries: its own, or a dictionary batch's values.
pub(crate) fn batch_of<'a>(
    message: &Message<'a>,
) -> Option<datafusion::arrow::ipc::RecordBatch<'a>> {
    message.header_as_record_batch().or_else(|| {
        message
            .header_as_dictionary_batch()
            .and_then(|dictionary| dictionary.data())
    })
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
