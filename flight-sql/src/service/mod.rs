//! The Flight SQL service: one handler per Flight SQL command, all of them thin over
//! [`QueryEngine`] and the session's catalogs. Its settings are [`FlightSqlConfig`]; the tuning
//! of the gRPC transport is in [`transport`].

mod bind;
mod catalog;
mod config;
mod encode;
mod planned;
pub mod transport;

pub use config::FlightSqlConfig;
pub use transport::bulk_endpoint;

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{Action, FlightData, FlightDescriptor, FlightInfo, Ticket};
use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use lru::LruCache;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::compression::IpcCompression;
use crate::error::{Error, Result};
use crate::handle::StatementHandle;
use crate::metadata;
use crate::query::{QueryEngine, bound_schema, parameter_schema};
use catalog::{TABLE_TYPES, foreign_keys_schema, primary_keys_schema, table_type_name};
use encode::{command_info, hydrated, schema_bytes};
use planned::{PlanKey, PlannedTickets};

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
    planned: PlannedTickets,
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
            planned: PlannedTickets::default(),
            engine,
            config: Arc::new(config),
        })
    }
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
        let text_bytes = query.query.len();
        let handle = StatementHandle::new(query.query).encode();
        let key = PlanKey::new(handle.clone(), request.metadata());
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let schema = crate::workarounds::answer_schema(&engine.session().state(), &plan);
        self.planned.keep(key, &engine, &plan, text_bytes);
        command_info(&schema, &ticket, request)
    }

    #[instrument(skip_all)]
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let compression = IpcCompression::requested(request.metadata())?;
        let handle = StatementHandle::decode(&ticket.statement_handle)?;
        let key = PlanKey::new(ticket.statement_handle, request.metadata());
        let (engine, plan) = match self.planned.take(&key) {
            Some((engine, plan)) => (engine, Some(plan)),
            None => (self.engine.for_request(request.extensions()).await?, None),
        };
        let stream = engine.run_planned(&handle.sql, plan, vec![]).await?;
        Ok(Response::new(self.encode(
            stream.schema(),
            stream,
            compression,
        )?))
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
        let key = PlanKey::new(ticket.prepared_statement_handle.clone(), request.metadata());
        self.planned.keep(key, &engine, &plan, handle.sql.len());
        command_info(&schema, &ticket, request)
    }

    #[instrument(skip_all)]
    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let compression = IpcCompression::requested(request.metadata())?;
        let key = PlanKey::new(cmd.prepared_statement_handle.clone(), request.metadata());
        let handle = self.resolve(&cmd.prepared_statement_handle)?;
        let (engine, plan) = match self.planned.take(&key) {
            Some((engine, plan)) => (engine, Some(plan)),
            None => (self.engine.for_request(request.extensions()).await?, None),
        };
        let stream = engine
            .run_planned(&handle.sql, plan, handle.params()?)
            .await?;
        Ok(Response::new(self.encode(
            stream.schema(),
            stream,
            compression,
        )?))
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
        self.forget(&query.prepared_statement_handle);
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
        let batches = bind::read_parameters(request.into_inner(), max_rows).await?;
        let bound = handle.with_params(&batches)?.encode();
        self.remember(cmd.prepared_statement_handle, bound.clone());
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
        self.encode_batch(builder.build().map_err(Error::from)?)
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
        self.encode_batch(builder.build().map_err(Error::from)?)
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
        for (catalog, schema, table, table_type, table_schema) in
            catalog::table_names(&engine).await?
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
        self.encode_batch(builder.build().map_err(Error::from)?)
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
        self.encode_batch(builder.build().map_err(Error::from)?)
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
        self.encode_batch(batch)
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
        self.encode_batch(batch)
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
        let exists = catalog::table_names(&engine)
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
        self.encode_batch(RecordBatch::new_empty(primary_keys_schema()))
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
        self.encode_batch(RecordBatch::new_empty(foreign_keys_schema()))
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
        self.encode_batch(RecordBatch::new_empty(foreign_keys_schema()))
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
        self.encode_batch(RecordBatch::new_empty(foreign_keys_schema()))
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
