//! The Flight SQL service: one handler per Flight SQL command, all of them thin over
//! [`QueryEngine`] and the session's catalogs. Its settings are [`FlightSqlConfig`]; the tuning
//! of the gRPC transport is in [`transport`].

mod config;
pub mod transport;

pub use config::FlightSqlConfig;
pub use transport::bulk_endpoint;

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket, decode::FlightRecordBatchStream,
};
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableType;
use futures::{Stream, StreamExt, TryStreamExt};
use lru::LruCache;
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::{instrument, warn};

use crate::error::{Error, Result};
use crate::fit;
use crate::handle::StatementHandle;
use crate::metadata;
use crate::query::{QueryEngine, bound_schema, parameter_schema};

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Arrow Flight SQL over a DataFusion session whose catalogs are the node's datasets.
///
/// Stateless by design: statement tickets and prepared-statement handles carry their SQL and
/// bound parameters (see [`StatementHandle`]), so any replica can serve any request.
#[derive(Clone)]
pub struct PolderFlightSqlService {
    engine: QueryEngine,
    sql_info: Arc<SqlInfoData>,
    xdbc: Arc<XdbcTypeInfoData>,
    bindings: Arc<Mutex<LruCache<Bytes, Bytes>>>,
    config: Arc<FlightSqlConfig>,
}

impl std::fmt::Debug for PolderFlightSqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolderFlightSqlService")
            .field("engine", &self.engine)
            .field("config", &self.config)
            .finish()
    }
}

impl PolderFlightSqlService {
    /// A service answering from `engine`'s session.
    pub fn new(engine: QueryEngine, config: FlightSqlConfig) -> Result<Self> {
        let capacity = NonZeroUsize::new(config.remembered_bindings.max(1)).expect("at least one");
        Ok(Self {
            sql_info: Arc::new(metadata::sql_info(&config.server)?),
            xdbc: Arc::new(metadata::xdbc_type_info()?),
            bindings: Arc::new(Mutex::new(LruCache::new(capacity))),
            engine,
            config: Arc::new(config),
        })
    }

    /// Encodes a stream of batches as Flight data with `schema` first, also when it is empty.
    fn encode<S>(&self, schema: SchemaRef, batches: S) -> FlightDataStream
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
        Box::pin(
            FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .with_max_flight_data_size(self.config.max_flight_data_bytes)
                .build(batches)
                .map_err(Status::from),
        )
    }

    fn encode_batch(&self, batch: RecordBatch) -> Response<FlightDataStream> {
        Response::new(self.encode(batch.schema(), futures::stream::once(async { Ok(batch) })))
    }

    /// Decodes a prepared-statement handle, with the parameters last bound to it when the
    /// client did not switch to the updated handle.
    fn resolve(&self, handle: &Bytes) -> Result<StatementHandle> {
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

    async fn table_names(
        engine: &QueryEngine,
    ) -> Result<Vec<(String, String, String, TableType, SchemaRef)>> {
        let ctx = engine.session();
        let mut out = vec![];
        let mut catalogs = ctx.catalog_names();
        catalogs.sort();
        for catalog_name in catalogs {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            let mut schemas = catalog.schema_names();
            schemas.sort();
            for schema_name in schemas {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let mut tables = schema.table_names();
                tables.sort();
                for table_name in tables {
                    if let Some(table) = schema.table(&table_name).await? {
                        out.push((
                            catalog_name.clone(),
                            schema_name.clone(),
                            table_name,
                            table.table_type(),
                            table.schema(),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }
}

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
fn command_info(
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
fn hydrated(schema: &Schema) -> Schema {
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

fn schema_bytes(schema: &Schema) -> Result<Bytes> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Error::Internal(format!("encoding schema: {e}")))?;
    Ok(bytes)
}

fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

const TABLE_TYPES: &[&str] = &["TABLE", "VIEW"];

/// Bytes of a Flight message that are not a row's data: the IPC message header, the
/// `FlightData` fields and gRPC framing.
const FRAMING_BYTES: usize = 16 * 1024;

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

fn read_only() -> Status {
    Error::Forbidden("the node is read-only: updates and ingestion are not allowed".into()).into()
}

#[tonic::async_trait]
impl FlightSqlService for PolderFlightSqlService {
    type FlightService = Self;

    #[instrument(skip_all)]
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let plan = engine.plan_audited(&query.query).await?;
        let handle = StatementHandle::new(query.query).encode();
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let schema = crate::workarounds::answer_schema(&engine.session().state(), &plan);
        command_info(&schema, &ticket, request)
    }

    #[instrument(skip_all)]
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        let stream = engine.run(&handle.sql, vec![]).await?;
        Ok(Response::new(self.encode(stream.schema(), stream)))
    }

    #[instrument(skip_all)]
    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let handle = self.resolve(&cmd.prepared_statement_handle)?;
        let plan = engine.plan_audited(&handle.sql).await?;
        let schema = bound_schema(&engine.session().state(), &plan, &handle.params()?)?;
        let ticket = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.encode(),
        };
        command_info(&schema, &ticket, request)
    }

    #[instrument(skip_all)]
    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let handle = self.resolve(&cmd.prepared_statement_handle)?;
        let stream = engine.run(&handle.sql, handle.params()?).await?;
        Ok(Response::new(self.encode(stream.schema(), stream)))
    }

    #[instrument(skip_all)]
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let plan = engine.plan_audited(&query.query).await?;
        let parameters = parameter_schema(&plan)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle::new(query.query).encode(),
            dataset_schema: schema_bytes(&hydrated(&crate::workarounds::answer_schema(
                &engine.session().state(),
                &plan,
            )))?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    #[instrument(skip_all)]
    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        StatementHandle::decode(&query.prepared_statement_handle)?;
        self.bindings.lock().pop(&query.prepared_statement_handle);
        Ok(())
    }

    #[instrument(skip_all)]
    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let max_rows = self.engine.limits().max_parameter_rows;
        // Each message is checked before Arrow's reader trusts the sizes it declares (see
        // `handle::ipc_message_fits`): a forged length must not make the node allocate it.
        let checked = request.into_inner().map(|data| {
            let data = data.map_err(FlightError::from)?;
            if !data.data_header.is_empty()
                && crate::handle::ipc_message_fits(&data.data_header, data.data_body.len())
                    .is_none()
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
            let batch = batch
                .map_err(|e| Error::InvalidRequest(format!("reading bound parameters: {e}")))?;
            rows += batch.num_rows();
            if rows > max_rows {
                return Err(Error::ResourceExhausted(format!(
                    "more than {max_rows} parameter rows bound; this node accepts at most {max_rows}"
                ))
                .into());
            }
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
        let bound = handle.with_params(&batches)?.encode();
        self.bindings
            .lock()
            .put(cmd.prepared_statement_handle, bound.clone());
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound),
        })
    }

    async fn do_put_statement_update(
        &self,
        _cmd: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_statement_ingest(
        &self,
        _cmd: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _cmd: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let mut builder = query.into_builder();
        let mut names = engine.session().catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        Ok(self.encode_batch(builder.build().map_err(Error::from)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let mut builder = query.into_builder();
        let ctx = engine.session();
        let mut catalogs = ctx.catalog_names();
        catalogs.sort();
        for catalog_name in catalogs {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                let mut schemas = catalog.schema_names();
                schemas.sort();
                for schema_name in schemas {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        Ok(self.encode_batch(builder.build().map_err(Error::from)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let mut builder = query.into_builder();
        for (catalog, schema, table, table_type, table_schema) in Self::table_names(&engine).await?
        {
            builder
                .append(
                    catalog,
                    schema,
                    table,
                    table_type_name(table_type),
                    &hydrated(&table_schema),
                )
                .map_err(Error::from)?;
        }
        Ok(self.encode_batch(builder.build().map_err(Error::from)?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        command_info(&schema, &query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        Ok(self.encode_batch(builder.build().map_err(Error::from)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&self.sql_info.schema(), &query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let batch = self
            .sql_info
            .record_batch(query.info)
            .map_err(Error::from)?;
        Ok(self.encode_batch(batch))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&self.xdbc.schema(), &query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let batch = query
            .into_builder(&self.xdbc)
            .build()
            .map_err(Error::from)?;
        Ok(self.encode_batch(batch))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&primary_keys_schema(), &query, request)
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let engine = self.engine.for_request(request.extensions()).await?;
        let exists = Self::table_names(&engine)
            .await?
            .iter()
            .any(|(c, s, t, _, _)| {
                query.catalog.as_ref().is_none_or(|q| q == c)
                    && query.db_schema.as_ref().is_none_or(|q| q == s)
                    && &query.table == t
            });
        if !exists {
            return Err(Error::NotFound(format!("table '{}' not found", query.table)).into());
        }
        // Datasets served by a node declare no primary keys.
        Ok(self.encode_batch(RecordBatch::new_empty(primary_keys_schema())))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(self.encode_batch(RecordBatch::new_empty(foreign_keys_schema())))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(self.encode_batch(RecordBatch::new_empty(foreign_keys_schema())))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(self.encode_batch(RecordBatch::new_empty(foreign_keys_schema())))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<FlightDataStream>, Status> {
        Err(Error::InvalidRequest(format!("ticket of unknown kind {:?}", message.type_url)).into())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
