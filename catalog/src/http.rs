//! The catalog over HTTP: `GET /catalog`, the SPARQL 1.1 Protocol on `/sparql`, and every
//! IRI of the catalog dereferenceable under the base URL.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxigraph::model::Triple;
use tower_http::cors::{Any, CorsLayer};
use tracing::{info, warn};

use crate::describe::service_description;
use crate::error::{SparqlError, SparqlErrorKind};
use crate::serialize::{RDF_OFFERS, try_serialize};
use crate::sparql::{Answer, AnswerBody, RequestDataset};
use crate::store::Catalog;

/// The catalog once it is built; requests before that get 503.
pub type SharedCatalog = Arc<OnceLock<Catalog>>;

/// Routes of the catalog. `max_body_bytes` bounds request bodies (SPARQL queries by POST).
pub fn router(catalog: SharedCatalog, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/catalog", get(whole_catalog))
        .route("/sparql", get(sparql_get).post(sparql_post))
        .fallback(resource)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Read-only open metadata, meant to be harvested and queried from any web page.
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD, Method::POST])
                .allow_headers([header::ACCEPT, header::CONTENT_TYPE]),
        )
        .with_state(catalog)
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

impl IntoResponse for SparqlError {
    fn into_response(self) -> Response {
        use SparqlErrorKind as K;
        let status = match self.kind() {
            K::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
            K::TooDeep
            | K::Syntax
            | K::BadRequest
            | K::TooManyResults
            | K::ResultTooLarge
            | K::Unsupported => StatusCode::BAD_REQUEST,
            K::Update => StatusCode::FORBIDDEN,
            K::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            K::Busy => StatusCode::TOO_MANY_REQUESTS,
            K::Timeout | K::ResourceLimit => StatusCode::SERVICE_UNAVAILABLE,
            K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            warn!(error = %self, "SPARQL request failed");
        } else {
            info!(error = %self, "SPARQL request refused");
        }
        let mut response = plain(status, self.to_string());
        if self.kind() == K::Busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn not_ready() -> Response {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the catalog is not ready yet: the node is still loading its datasets",
    )
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn rdf_response(headers: &HeaderMap, triples: &[Triple]) -> Response {
    let offer = match crate::sparql::choose(accept(headers), RDF_OFFERS) {
        Ok(offer) => offer,
        Err(e) => return e.into_response(),
    };
    match try_serialize(triples, offer.value) {
        Ok(bytes) => answer(Answer::bytes(offer.value.media_type(), bytes)),
        Err(e) => e.into_response(),
    }
}

fn answer(answer: Answer) -> Response {
    let body = match answer.body {
        AnswerBody::Bytes(bytes) => Body::from(bytes),
        // Streamed as the worker writes it; an error cuts the response.
        AnswerBody::Stream(stream) => Body::from_stream(stream),
    };
    (
        [
            (header::CONTENT_TYPE, answer.content_type),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

async fn whole_catalog(State(catalog): State<SharedCatalog>, headers: HeaderMap) -> Response {
    match catalog.get() {
        Some(catalog) => rdf_response(&headers, catalog.triples()),
        None => not_ready(),
    }
}

/// Any other GET: the description of the catalog resource whose IRI is the base URL plus
/// the request path.
async fn resource(
    State(catalog): State<SharedCatalog>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed here");
    }
    let Some(catalog) = catalog.get() else {
        return not_ready();
    };
    let iri = format!("{}{}", catalog.iris().base(), uri.path());
    match catalog.describe(&iri) {
        Some(triples) => rdf_response(&headers, &triples),
        None => plain(
            StatusCode::NOT_FOUND,
            format!(
                "nothing here: {} is not a resource of this catalog (see {})",
                uri.path(),
                catalog.iris().catalog()
            ),
        ),
    }
}

/// The dataset named by the protocol's `default-graph-uri` and `named-graph-uri` parameters
/// (None if there are none): only the catalog's own graph, `graph`, may be named. The update
/// parameters `using-graph-uri` and `using-named-graph-uri` are refused.
fn dataset_parameters<'a>(
    params: impl Iterator<Item = (&'a str, &'a str)>,
    graph: &str,
) -> Result<Option<RequestDataset>, SparqlError> {
    let mut dataset: Option<RequestDataset> = None;
    for (name, value) in params {
        let named = match name {
            "default-graph-uri" => false,
            "named-graph-uri" => true,
            "using-graph-uri" | "using-named-graph-uri" => {
                return Err(SparqlError::BadRequest(format!(
                    "the parameter '{name}' belongs to SPARQL Update, which this read-only endpoint does not accept"
                )));
            }
            _ => continue,
        };
        if value.trim() != graph {
            return Err(crate::sparql::unknown_graph(value.trim(), graph));
        }
        let wanted = dataset.get_or_insert(RequestDataset {
            default_graph: false,
            named_graph: false,
        });
        if named {
            wanted.named_graph = true;
        } else {
            wanted.default_graph = true;
        }
    }
    Ok(dataset)
}

async fn sparql_get(
    State(catalog): State<SharedCatalog>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let Some(catalog) = catalog.get() else {
        return not_ready();
    };
    let query = the_query(&params).and_then(|query| {
        let dataset = dataset_parameters(pairs(&params), &catalog.iris().catalog())?;
        Ok((query, dataset))
    });
    match query {
        Ok((None, _)) => rdf_response(
            &headers,
            &service_description(catalog.iris(), catalog.triples().len(), catalog.limits()),
        ),
        Ok((Some(query), dataset)) => run(catalog, query, dataset, &headers).await,
        Err(e) => e.into_response(),
    }
}

fn pairs(params: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The one `query` of protocol parameters (None if there is none), refusing updates and
/// repeated queries.
fn the_query(params: &[(String, String)]) -> Result<Option<&str>, SparqlError> {
    if params.iter().any(|(k, _)| k == "update") {
        return Err(SparqlError::Update);
    }
    let mut queries = params.iter().filter(|(k, _)| k == "query");
    match (queries.next(), queries.next()) {
        (None, _) => Ok(None),
        (Some((_, query)), None) => Ok(Some(query)),
        (Some(_), Some(_)) => Err(SparqlError::BadRequest(
            "give exactly one 'query' parameter".into(),
        )),
    }
}

async fn sparql_post(
    State(catalog): State<SharedCatalog>,
    Query(url_params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(catalog) = catalog.get() else {
        return not_ready();
    };
    let graph = catalog.iris().catalog();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        // Dataset parameters come in the URL (SPARQL 1.1 Protocol §2.1.3).
        "application/sparql-query" => {
            let dataset = match dataset_parameters(pairs(&url_params), &graph) {
                Ok(dataset) => dataset,
                Err(e) => return e.into_response(),
            };
            match std::str::from_utf8(&body) {
                Ok(query) => run(catalog, query, dataset, &headers).await,
                Err(_) => SparqlError::BadRequest("the query is not UTF-8".into()).into_response(),
            }
        }
        "application/sparql-update" => SparqlError::Update.into_response(),
        "application/x-www-form-urlencoded" => {
            let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            // In the body (§2.1.2), though clients also put them in the URL.
            let query = the_query(&params).and_then(|query| {
                let all = pairs(&url_params).chain(pairs(&params));
                Ok((query, dataset_parameters(all, &graph)?))
            });
            match query {
                Ok((Some(query), dataset)) => run(catalog, query, dataset, &headers).await,
                Ok((None, _)) => {
                    SparqlError::BadRequest("give exactly one 'query' parameter".into())
                        .into_response()
                }
                Err(e) => e.into_response(),
            }
        }
        other => plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "POST /sparql takes application/sparql-query or application/x-www-form-urlencoded, not '{other}'"
            ),
        ),
    }
}

async fn run(
    catalog: &Catalog,
    query: &str,
    dataset: Option<RequestDataset>,
    headers: &HeaderMap,
) -> Response {
    match catalog.query_in(query, accept(headers), dataset).await {
        Ok(result) => answer(result),
        Err(e) => e.into_response(),
    }
}
