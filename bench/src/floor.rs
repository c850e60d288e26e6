//! The transport floor of a Flight scan: a bare Arrow Flight server whose `DoGet` sends batches
//! it already holds in memory, with the same gRPC settings and message size as a Polder node.
//! No SQL, no planning, no Parquet decoding: what is left is Arrow IPC encoding, gRPC and the
//! loopback connection, which every Flight server pays.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves `batches` to every `DoGet`, whatever the ticket.
#[derive(Debug, Clone)]
struct Floor {
    batches: Arc<Vec<RecordBatch>>,
    max_flight_data_bytes: usize,
}

/// Starts the floor server on a free loopback port.
pub async fn serve(batches: Vec<RecordBatch>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = polder_flight_sql::FlightSqlConfig::default();
    let floor = Floor {
        batches: Arc::new(batches),
        max_flight_data_bytes: config.max_flight_data_bytes,
    };
    let server = FlightServiceServer::new(floor)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    tokio::spawn(
        polder_flight_sql::PolderFlightSqlService::transport()
            .add_service(server)
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    Ok(addr)
}

fn unimplemented<T>() -> Result<T, Status> {
    Err(Status::unimplemented(
        "the transport floor only answers DoGet",
    ))
}

#[tonic::async_trait]
impl FlightService for Floor {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoExchangeStream = Boxed<FlightData>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let batches = Arc::clone(&self.batches);
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .ok_or_else(|| Status::not_found("no batches"))?;
        let stream = futures::stream::iter((0..batches.len()).map(move |i| Ok(batches[i].clone())));
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(self.max_flight_data_bytes)
            .build(stream)
            .map_err(Status::from);
        Ok(Response::new(encoded.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unimplemented()
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unimplemented()
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unimplemented()
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unimplemented()
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unimplemented()
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unimplemented()
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unimplemented()
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unimplemented()
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unimplemented()
    }
}
