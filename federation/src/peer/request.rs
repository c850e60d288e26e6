//! One request to a peer under the peer timeout: its answer streamed endpoint by endpoint,
//! each next batch within the timeout too, and its failures classified as [`PeerError`]s.

use std::pin::Pin;
use std::time::Duration;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightClient, Ticket};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo};
use datafusion::arrow::array::RecordBatch;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use polder_flight_sql::compression::check_result_message;
use prost::Message;
use tracing::Instrument;

use super::Peer;
use crate::error::PeerError;

/// The location a Flight endpoint names to mean "the connection the FlightInfo came from".
const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection://?";

/// Batches from a peer, each checked only for transport and protocol errors.
pub(super) type Batches = BoxStream<'static, Result<RecordBatch, PeerError>>;

impl Peer {
    /// Runs `sql` on the peer and streams its answer.
    pub async fn query(&self, sql: String) -> Result<Batches, PeerError> {
        self.fetch(statement(sql)).await
    }

    /// Asks the peer to plan `descriptor`, without running it.
    pub(super) async fn plan(&self, descriptor: FlightDescriptor) -> Result<FlightInfo, PeerError> {
        let mut client = self.client(self.channel.clone());
        self.timed(client.get_flight_info(descriptor)).await
    }

    /// Asks the peer to plan `descriptor` and streams every endpoint of its answer, in order.
    pub(super) async fn fetch(&self, descriptor: FlightDescriptor) -> Result<Batches, PeerError> {
        let info = self.plan(descriptor).await?;
        let peer = self.clone();
        // Endpoints are read as the answer is consumed, outside this call: in the remote
        // part's span still, so their requests carry its trace context.
        let span = tracing::Span::current();
        let batches = stream::iter(info.endpoint)
            .then(move |endpoint| {
                let peer = peer.clone();
                async move { peer.read_endpoint(endpoint).await }.instrument(span.clone())
            })
            .try_flatten();
        Ok(batches.boxed())
    }

    /// Streams one endpoint of an answer, from the location it names or over this connection.
    async fn read_endpoint(&self, endpoint: FlightEndpoint) -> Result<Batches, PeerError> {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| self.protocol("an endpoint has no ticket".into()))?;
        let channel = match endpoint.location.first() {
            Some(location) if location.uri != REUSE_CONNECTION && !location.uri.is_empty() => {
                let url = location.uri.parse().map_err(|source| PeerError::Url {
                    peer: self.config.name.clone(),
                    source,
                })?;
                super::connect::channel_to(&self.config.name, &url, &self.options)?
            }
            _ => self.channel.clone(),
        };
        let mut client = self.client(channel);
        let batches = self
            .timed(checked_do_get(
                &mut client,
                ticket,
                self.options.max_message_bytes,
            ))
            .await?;
        let peer = self.clone();
        Ok(idle_timeout(batches, self.options.peer_timeout)
            .map(move |item| match item {
                Some(Ok(batch)) => Ok(batch),
                Some(Err(e)) => Err(peer.flight_error(e)),
                None => Err(peer.timeout()),
            })
            .boxed())
    }

    /// Runs one request under the peer timeout.
    async fn timed<T, F>(&self, fut: F) -> Result<T, PeerError>
    where
        F: Future<Output = Result<T, FlightError>>,
    {
        match tokio::time::timeout(self.options.peer_timeout, fut).await {
            Ok(result) => result.map_err(|e| self.flight_error(e)),
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> PeerError {
        PeerError::Timeout {
            peer: self.config.name.clone(),
            timeout: self.options.peer_timeout,
        }
    }

    /// Classifies a Flight error: transport failures mean the peer is unavailable, statuses the
    /// peer sent are its own errors, anything else broke the protocol.
    fn flight_error(&self, err: FlightError) -> PeerError {
        match err {
            // A peer that stopped answering HTTP/2 keep-alive pings ran out of time: the same
            // as one that took longer than the peer timeout (DEADLINE_EXCEEDED, UDN-ERR-1).
            FlightError::Tonic(status) if timed_out(&status) => self.timeout(),
            FlightError::Tonic(status) if from_transport(&status) => PeerError::Unavailable {
                peer: self.config.name.clone(),
                url: self.config.url.to_string(),
                message: transport_message(&status),
            },
            FlightError::Tonic(status) => PeerError::Remote {
                peer: self.config.name.clone(),
                code: status.code(),
                message: status.message().to_string(),
            },
            other => self.protocol(other.to_string()),
        }
    }
}

/// `DoGet` with every message checked before Arrow's reader decodes it
/// ([`check_result_message`]): a peer's batch may not declare more than `max_decompressed`
/// bytes once decompressed, nor buffers outside its body.
async fn checked_do_get(
    client: &mut FlightClient,
    ticket: Ticket,
    max_decompressed: usize,
) -> Result<FlightRecordBatchStream, FlightError> {
    let mut request = tonic::Request::new(ticket);
    *request.metadata_mut() = client.metadata().clone();
    let messages = client.inner_mut().do_get(request).await?.into_inner();
    let checked = messages.map(move |data| {
        let data = data.map_err(FlightError::from)?;
        check_result_message(&data, max_decompressed).map_err(FlightError::DecodeError)?;
        Ok(data)
    });
    Ok(FlightRecordBatchStream::new_from_flight_data(checked))
}

/// The descriptor of a Flight SQL statement.
pub(super) fn statement(sql: String) -> FlightDescriptor {
    let command = CommandStatementQuery {
        query: sql,
        transaction_id: None,
    };
    FlightDescriptor::new_cmd(command.as_any().encode_to_vec())
}

/// Whether the transport made `status` (it carries the transport's error as its source, or is
/// an empty `Unavailable`), rather than the peer sending it.
fn from_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
        || (status.code() == tonic::Code::Unavailable && status.message().is_empty())
}

/// Yields `Some(item)` for each item of `inner`, or one `None` (and then ends) when `timeout`
/// passes without the next item.
fn idle_timeout<S, T>(inner: S, timeout: Duration) -> impl Stream<Item = Option<T>> + Send
where
    S: Stream<Item = T> + Send + 'static,
    T: Send,
{
    let inner: Pin<Box<dyn Stream<Item = T> + Send>> = Box::pin(inner);
    stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(timeout, inner.next()).await {
            Ok(Some(item)) => Some((Some(item), Some(inner))),
            Ok(None) => None,
            Err(_) => Some((None, None)),
        }
    })
}

/// Whether the transport error under `status` is a timeout (hyper's keep-alive ping timeout
/// among them), found in its chain of sources.
fn timed_out(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// The transport's message and the causes under it: "transport error: tcp connect error:
/// Connection refused (os error 111)".
fn transport_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = err.source();
    }
    message
}
