//! What wraps the Flight SQL service on the wire, so that a client's fault is reported as one.
//!
//! - [`CheckedCommands`] decodes the Flight SQL command of every descriptor and ticket before the
//!   service sees it: arrow-flight answers a command whose body does not decode with `INTERNAL`
//!   (the node's fault), where it is the client's (`INVALID_ARGUMENT`, UDN-ERR-1).
//! - [`OversizeStatus`] turns the `OUT_OF_RANGE` that gRPC (tonic) answers a message over the
//!   size limit with into `RESOURCE_EXHAUSTED`, the status UDN-FSQL-8 gives a limit reached.

use std::task::{Context, Poll};

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::{Any, Command};
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

/// Refuses a descriptor's or ticket's bytes that are not a decodable Flight SQL command, with
/// a message that does not repeat them.
fn check_command(bytes: &[u8], what: &str) -> Result<(), Status> {
    let any = Any::decode(bytes).map_err(|_| {
        Status::invalid_argument(format!(
            "the {what} is not a Flight SQL command (a protobuf Any)"
        ))
    })?;
    Command::try_from(any).map_err(|_| {
        Status::invalid_argument(format!(
            "the {what} holds a Flight SQL command whose fields do not decode"
        ))
    })?;
    Ok(())
}

/// A Flight service whose commands are decoded before it sees them (see the module docs).
#[derive(Debug, Clone)]
pub struct CheckedCommands<S>(pub S);

#[tonic::async_trait]
impl<S: FlightService> FlightService for CheckedCommands<S> {
    type HandshakeStream = S::HandshakeStream;
    type ListFlightsStream = S::ListFlightsStream;
    type DoGetStream = S::DoGetStream;
    type DoPutStream = S::DoPutStream;
    type DoExchangeStream = S::DoExchangeStream;
    type DoActionStream = S::DoActionStream;
    type ListActionsStream = S::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.0.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.0.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        check_command(&request.get_ref().cmd, "descriptor")?;
        self.0.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        check_command(&request.get_ref().cmd, "descriptor")?;
        self.0.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        check_command(&request.get_ref().cmd, "descriptor")?;
        self.0.get_schema(request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        check_command(&request.get_ref().ticket, "ticket")?;
        self.0.do_get(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.0.do_put(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.0.do_exchange(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.0.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.0.list_actions(request).await
    }
}

/// A tower layer for the gRPC server: `OUT_OF_RANGE` (a message over the size limit, in
/// tonic's words) becomes `RESOURCE_EXHAUSTED` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct OversizeStatus;

impl<S> tower_layer::Layer<S> for OversizeStatus {
    type Service = OversizeStatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizeStatusService(inner)
    }
}

/// The service [`OversizeStatus`] makes.
#[derive(Debug, Clone)]
pub struct OversizeStatusService<S>(S);

/// gRPC status codes, as sent in the `grpc-status` header.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>>
    for OversizeStatusService<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::MapOk<
        S::Future,
        fn(http::Response<ResponseBody>) -> http::Response<ResponseBody>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        use futures::TryFutureExt;
        self.0.call(request).map_ok(remap_status)
    }
}

/// A refusal before any response message (a request over the limit) carries its status in
/// the response headers ("trailers-only").
fn remap_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) == Some(OUT_OF_RANGE) {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static(RESOURCE_EXHAUSTED),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};

    #[test]
    fn commands_that_do_not_decode_are_the_clients_fault() {
        let good = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        }
        .as_any()
        .encode_to_vec();
        assert!(check_command(&good, "descriptor").is_ok());
        let bad_body = Any {
            type_url: "type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery".into(),
            value: vec![0xff, 0xff, 0xff].into(),
        }
        .encode_to_vec();
        for bytes in [bad_body.as_slice(), b"\xff\x00 not protobuf"] {
            let status = check_command(bytes, "ticket").unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(!status.message().contains("not protobuf"));
        }
    }

    #[test]
    fn out_of_range_becomes_resource_exhausted() {
        let response = http::Response::builder()
            .header("grpc-status", OUT_OF_RANGE)
            .body(())
            .unwrap();
        assert_eq!(
            remap_status(response).headers()["grpc-status"],
            RESOURCE_EXHAUSTED
        );
        let ok = http::Response::builder()
            .header("grpc-status", "0")
            .body(())
            .unwrap();
        assert_eq!(remap_status(ok).headers()["grpc-status"], "0");
    }
}
