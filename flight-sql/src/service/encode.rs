//! Answers and schemas as they go on the wire: result batches cut to fit Flight messages and
//! encoded, `FlightInfo`s, and schemas with dictionaries hydrated.

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::{FlightDataStream, PolderFlightSqlService};
use crate::compression::IpcCompression;
use crate::error::{Error, Result};
use crate::fit;

/// Bytes of a Flight message that are not a row's data: the IPC message header, the
/// `FlightData` fields and gRPC framing.
const FRAMING_BYTES: usize = 16 * 1024;

impl PolderFlightSqlService {
    /// Encodes a stream of batches as Flight data with `schema` first, also when it is empty,
    /// their bodies compressed as `compression` says.
    pub(super) fn encode<S>(
        &self,
        schema: SchemaRef,
        batches: S,
        compression: IpcCompression,
    ) -> Result<FlightDataStream>
    where
        S: Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    {
        let target = self.config.max_flight_data_bytes;
        // Room for the IPC and Flight framing around a row's data.
        let limit = self.config.max_message_bytes.saturating_sub(FRAMING_BYTES);
        let batches = batches
            .map(move |batch| {
                let pieces = batch
                    .map_err(Error::from)
                    .and_then(|batch| fit::fit(batch, target, limit));
                match pieces {
                    Ok(pieces) => futures::stream::iter(pieces.into_iter().map(Ok)).left_stream(),
                    Err(err) => {
                        warn!(code = err.code(), error = %err, "query failed while streaming");
                        let status = FlightError::Tonic(Box::new(Status::from(err)));
                        futures::stream::once(async move { Err(status) }).right_stream()
                    }
                }
            })
            .flatten();
        Ok(Box::pin(
            FlightDataEncoderBuilder::new()
                .with_options(compression.write_options()?)
                .with_schema(schema)
                .with_max_flight_data_size(self.config.max_flight_data_bytes)
                .build(batches)
                .map_err(Status::from),
        ))
    }

    /// Encodes one batch (a metadata answer) as Flight data, uncompressed.
    pub(super) fn encode_batch(
        &self,
        batch: RecordBatch,
    ) -> Result<Response<FlightDataStream>, Status> {
        let schema = batch.schema();
        let batches = futures::stream::once(async move { Ok(batch) });
        Ok(Response::new(self.encode(
            schema,
            batches,
            IpcCompression::None,
        )?))
    }
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket`, for results of `schema`.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let info = FlightInfo::new()
        .try_with_schema(&hydrated(schema))
        .map_err(|e| Error::Internal(format!("encoding schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(info)
}

/// The `FlightInfo` of a metadata command: its ticket is the command itself, so any replica
/// can answer the `DoGet`.
pub(super) fn command_info(
    schema: &Schema,
    command: &impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let info = flight_info(
        schema,
        command.as_any().encode_to_vec(),
        request.into_inner(),
    )?;
    Ok(Response::new(info))
}

/// The schema as clients receive it: Flight data is sent with dictionaries hydrated to values.
pub(super) fn hydrated(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => {
                f.as_ref().clone().with_data_type(value.as_ref().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `schema` as an IPC message, as prepared-statement results carry it.
pub(super) fn schema_bytes(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Error::Internal(format!("encoding schema: {e}")))?;
    Ok(bytes)
}
