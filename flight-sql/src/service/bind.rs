//! Parameters bound to prepared statements: read from a client's `DoPut`, and remembered for
//! clients that keep using the handle they had before binding.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;

use super::PolderFlightSqlService;
use crate::error::{Error, Result};
use crate::handle::StatementHandle;

/// Reads the parameter batches a client binds, refusing more than `max_rows` rows in all;
/// empty batches are left out.
pub(super) async fn read_parameters(
    stream: PeekableFlightDataStream,
    max_rows: usize,
) -> Result<Vec<RecordBatch>> {
    // Each message is checked before Arrow's reader trusts the sizes it declares (see
    // `handle::ipc_message_fits`): a forged length must not make the node allocate it.
    let checked = stream.map(|data| {
        let data = data.map_err(FlightError::from)?;
        if !data.data_header.is_empty()
            && crate::handle::ipc_message_fits(&data.data_header, data.data_body.len()).is_none()
        {
            return Err(FlightError::DecodeError(
                "a message whose buffers do not fit its body, or a compressed batch (bind \
                 parameters uncompressed)"
                    .into(),
            ));
        }
        Ok(data)
    });
    let mut stream = FlightRecordBatchStream::new_from_flight_data(checked);
    let mut batches = vec![];
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch =
            batch.map_err(|e| Error::InvalidRequest(format!("reading bound parameters: {e}")))?;
        rows += batch.num_rows();
        if rows > max_rows {
            return Err(Error::ResourceExhausted(format!(
                "more than {max_rows} parameter rows bound; this node accepts at most {max_rows}"
            )));
        }
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    Ok(batches)
}

impl PolderFlightSqlService {
    /// Decodes a prepared-statement handle, with the parameters last bound to it when the
    /// client did not switch to the updated handle.
    pub(super) fn resolve(&self, handle: &Bytes) -> Result<StatementHandle> {
        let decoded = StatementHandle::decode(handle)?;
        if decoded.has_params() {
            return Ok(decoded);
        }
        let remembered = self.bindings.lock().get(handle).cloned();
        match remembered {
            Some(bound) => StatementHandle::decode(&bound),
            None => Ok(decoded),
        }
    }

    /// Remembers that `bound` is `handle` with parameters bound.
    pub(super) fn remember(&self, handle: Bytes, bound: Bytes) {
        self.bindings.lock().put(handle, bound);
    }

    /// Forgets the parameters bound to `handle` (the client closed it).
    pub(super) fn forget(&self, handle: &Bytes) {
        self.bindings.lock().pop(handle);
    }
}
