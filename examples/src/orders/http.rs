//! The shop over HTTP (axum): commands are POSTs, queries are GETs, read-model changes are
//! pushed over a WebSocket.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /orders` `{"customer": "ada"}` | places an order; `201` with its id |
//! | `POST /orders/{id}/lines` `{"sku", "quantity", "unit_price_cents"}` | adds a line |
//! | `POST /orders/{id}/lines/remove` `{"sku"}` | removes a line |
//! | `POST /orders/{id}/submit`, `/pay` `{"amount_cents"}`, `/ship`, `/cancel` `{"reason"}` | moves the order on |
//! | `GET /orders/{id}` | the order, folded from its events now |
//! | `GET /customers/{customer}/orders?after=<position>` | read model: a customer's orders |
//! | `GET /revenue?after=<position>` | read model: revenue per day |
//! | `GET /changes` (WebSocket) | every read-model change, as JSON, as it is applied |
//! | `GET /read-models/{name}/dead-letters` | the events read model `name` passed by, pending |
//! | `POST /read-models/{name}/dead-letters/retry` | hands them to its handler again (after a fix) |
//! | `POST /read-models/{name}/dead-letters/discard` | gives up on them |
//!
//! A read model (`orders_by_customer`, `revenue_per_day`) that fails on an event (one it cannot
//! decode, or whose amounts do not add up) does not stop: it parks the event in its dead
//! letters, with the later events of that order, and goes on with the other orders. The
//! dead-letter list answers `{"read_model", "dead_letters": [{"event_id", "stream", "version",
//! "position", "event_type", "reason", "error", "attempts", "first_failed_at",
//! "last_failed_at"}]}` (`reason`: `failed`, or `parked` behind an earlier letter of its
//! stream); a retry answers `{"handled": [<event id>...], "failed": [...]}`, a discard
//! `{"discarded": <count>}`.
//!
//! Every command answers `{"order_id", "version", "position"}`: the order's new version and
//! the global position of the commit, printed `"commit.sequence"`. A client that passes that
//! position back as `?after=` reads its own write: the query waits (up to a bound) until the
//! read model has caught up with it. Headers: `x-correlation-id` (a UUID) is recorded on the
//! events; `idempotency-key` makes a retried request return the first commit instead of
//! appending twice (a `POST /orders` under a key places the order whose id the key gives),
//! and a key already used for another request (another order, command or body) answers `422`.
//!
//! Errors are JSON, `{"error": "<code>", "message": "..."}`, unknown routes and methods
//! included: `404` unknown order, read model or route, `405` a method the route does not have, `400`
//! malformed body, path or position, `415` a body that is not `application/json`, `422` a value
//! no order can hold or a reused idempotency key, `409` a shop rule refused the command or it
//! kept conflicting with concurrent writers, `500` an order whose stored history does not add
//! up, `503` the read model did not catch up in time or has stopped (a handler's panic, a store
//! failure).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventsource_core::prelude::*;
use eventsource_core::{CommandOptions, IntoEvents, ProjectionError, StoreError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::commands::OrderError;
use super::model::{Order, OrderEvent};
use super::read_models::{OrderSummary, ReadModelChange};
use super::shop::{ReadModel, Shop, UnknownReadModel};
use crate::request::Request;

/// How long a query waits for its read model to reach the position it was given.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(5);

/// The HTTP service: the shop and how long queries may wait.
#[derive(Debug)]
pub struct OrdersApi {
    shop: Shop,
    catch_up: Duration,
}

impl OrdersApi {
    /// Serves `shop`, letting queries wait up to `catch_up` for their read model.
    pub fn new(shop: Shop, catch_up: Duration) -> Self {
        Self { shop, catch_up }
    }

    /// The shop served: what an operator reaches beside the routes (to deploy a fix, say).
    pub fn shop(&self) -> &Shop {
        &self.shop
    }

    /// The routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/orders", post(place))
            .route("/orders/{id}", get(order))
            .route("/orders/{id}/lines", post(add_line))
            .route("/orders/{id}/lines/remove", post(remove_line))
            .route("/orders/{id}/submit", post(submit))
            .route("/orders/{id}/pay", post(pay))
            .route("/orders/{id}/ship", post(ship))
            .route("/orders/{id}/cancel", post(cancel))
            .route("/customers/{customer}/orders", get(orders_of))
            .route("/revenue", get(revenue))
            .route("/changes", get(changes))
            .route("/read-models/{name}/dead-letters", get(dead_letters))
            .route(
                "/read-models/{name}/dead-letters/retry",
                post(retry_dead_letters),
            )
            .route(
                "/read-models/{name}/dead-letters/discard",
                post(discard_dead_letters),
            )
            // After the routes: it applies to those registered before it.
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(no_such_route)
            .with_state(self)
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Runs one command on order `id` with the request's correlation id and idempotency key.
    /// `body` is the request as parsed: under a key, the request's fingerprint is recorded on
    /// the events, so that the key reused for another request is told apart from a retry.
    async fn command<D, F>(
        &self,
        id: &str,
        headers: &HeaderMap,
        name: &str,
        body: &impl Serialize,
        decide: F,
    ) -> Result<Committed, ApiError>
    where
        F: FnMut(&Order) -> Result<D, OrderError> + Send,
        D: IntoEvents<OrderEvent>,
    {
        let mut options: CommandOptions = request_of(headers).command(name);
        let keyed = header(headers, IDEMPOTENCY_KEY).map(|key| {
            // One key names one request, whatever order or command it is sent for: the
            // fingerprint tells a retry from another request under the same key.
            (format!("orders/{key}"), fingerprint(id, name, body))
        });
        if let Some((key, fingerprint)) = &keyed {
            options.metadata = options
                .metadata
                .with_header(FINGERPRINT_HEADER, fingerprint.as_str());
            options = options.idempotency_key(key.as_str());
        }
        let executed = self.shop.execute(id, options, decide).await;
        if let Some((key, fingerprint)) = &keyed {
            // Checked after the command, whatever it answered: a key that another request
            // committed is found there by the command (which returns that commit unchanged),
            // or met by its append when both raced (the store refuses the events' ids).
            self.ensure_same_request(key, fingerprint).await?;
        }
        Ok(Committed::new(id, &executed?))
    }

    /// Fails when `key` committed a request other than the one `fingerprint` identifies.
    /// Events recorded without a fingerprint pass: they cannot tell.
    async fn ensure_same_request(&self, key: &str, fingerprint: &str) -> Result<(), ApiError> {
        let first = self
            .shop
            .first_event_of(key)
            .await
            .map_err(ApiError::internal)?;
        let recorded = first
            .as_ref()
            .and_then(|e| e.metadata.headers.get(FINGERPRINT_HEADER));
        match recorded {
            Some(recorded) if recorded != fingerprint => Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "idempotency_key_reused",
                message: "this idempotency key was already used for another request: a new \
                          request needs a new key"
                    .to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// The header whose value makes a command idempotent.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The event metadata header holding the fingerprint of the request that committed it.
const FINGERPRINT_HEADER: &str = "request_fingerprint";

/// The namespace of request fingerprints and of the order ids idempotency keys give.
const NAMESPACE: Uuid = Uuid::from_u128(0x5e0f_3c4a_9b1d_4f6e_8a27_c1d9_0b6e_4a73);

/// What tells one request from another under an idempotency key: the order, the command and
/// its body as parsed (so spacing and field order do not count), as a UUID v5.
fn fingerprint(order_id: &str, name: &str, body: &impl Serialize) -> String {
    // These bodies are plain structs: serializing them cannot fail.
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut request = Vec::with_capacity(order_id.len() + name.len() + 2 + body.len());
    for part in [order_id.as_bytes(), name.as_bytes()] {
        request.extend_from_slice(part);
        request.push(0);
    }
    request.extend_from_slice(&body);
    Uuid::new_v5(&NAMESPACE, &request).to_string()
}

/// What a command answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The order.
    pub order_id: String,
    /// The order's version after the command.
    pub version: u64,
    /// The global position of the commit (`"commit.sequence"`): pass it as `?after=`.
    pub position: String,
}

impl Committed {
    fn new(order_id: &str, commit: &Commit) -> Self {
        let version = commit
            .version_of(&Order::stream_id(order_id))
            .unwrap_or(Version::ZERO);
        Self {
            order_id: order_id.to_owned(),
            version: version.get(),
            position: commit.position.to_string(),
        }
    }
}

/// `POST /orders`.
#[derive(Debug, Serialize, Deserialize)]
struct PlaceOrder {
    customer: String,
}

/// `POST /orders/{id}/lines`. The quantity is read as any 64-bit integer, so that a negative
/// one is refused by the shop's rules as a value (`422 invalid`, like zero), not as a body of
/// the wrong shape.
#[derive(Debug, Serialize, Deserialize)]
struct AddLine {
    sku: String,
    quantity: i64,
    unit_price_cents: i64,
}

/// `POST /orders/{id}/lines/remove`.
#[derive(Debug, Serialize, Deserialize)]
struct RemoveLine {
    sku: String,
}

/// `POST /orders/{id}/pay`.
#[derive(Debug, Serialize, Deserialize)]
struct Pay {
    amount_cents: i64,
}

/// `POST /orders/{id}/cancel`.
#[derive(Debug, Serialize, Deserialize)]
struct Cancel {
    #[serde(default)]
    reason: String,
}

type Api = State<Arc<OrdersApi>>;
type Body<T> = Result<Json<T>, JsonRejection>;

/// A path segment (`{id}`, `{customer}`): one that does not decode answers a JSON error.
struct Segment(String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Self(segment)),
            Err(e) => Err(e.into()),
        }
    }
}

async fn place(
    State(api): Api,
    headers: HeaderMap,
    body: Body<PlaceOrder>,
) -> Result<(StatusCode, Json<Committed>), ApiError> {
    let Json(body) = body?;
    // Under an idempotency key the key gives the order its id, so a retry finds the order it
    // placed; without one, every request places a new order.
    let id = match header(&headers, IDEMPOTENCY_KEY) {
        Some(key) => Uuid::new_v5(&NAMESPACE, key.as_bytes()),
        None => Uuid::new_v4(),
    }
    .to_string();
    let committed = api
        .command(&id, &headers, "place", &body, |o| o.place(&body.customer))
        .await?;
    Ok((StatusCode::CREATED, Json(committed)))
}

async fn add_line(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
    body: Body<AddLine>,
) -> Result<Json<Committed>, ApiError> {
    let Json(line) = body?;
    api.command(&id, &headers, "add_line", &line, |o| {
        o.add_line(&line.sku, line.quantity, line.unit_price_cents)
    })
    .await
    .map(Json)
}

async fn remove_line(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
    body: Body<RemoveLine>,
) -> Result<Json<Committed>, ApiError> {
    let Json(line) = body?;
    api.command(&id, &headers, "remove_line", &line, |o| {
        o.remove_line(&line.sku)
    })
    .await
    .map(Json)
}

async fn submit(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
) -> Result<Json<Committed>, ApiError> {
    api.command(&id, &headers, "submit", &(), Order::submit)
        .await
        .map(Json)
}

async fn pay(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
    body: Body<Pay>,
) -> Result<Json<Committed>, ApiError> {
    let Json(pay) = body?;
    api.command(&id, &headers, "pay", &pay, |o| o.pay(pay.amount_cents))
        .await
        .map(Json)
}

async fn ship(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
) -> Result<Json<Committed>, ApiError> {
    api.command(&id, &headers, "ship", &(), Order::ship)
        .await
        .map(Json)
}

async fn cancel(
    State(api): Api,
    Segment(id): Segment,
    headers: HeaderMap,
    body: Body<Cancel>,
) -> Result<Json<Committed>, ApiError> {
    let Json(cancel) = body?;
    api.command(&id, &headers, "cancel", &cancel, |o| {
        o.cancel(&cancel.reason)
    })
    .await
    .map(Json)
}

/// `GET /orders/{id}`.
#[derive(Debug, Serialize)]
struct OrderView {
    order_id: String,
    version: u64,
    total_cents: i64,
    #[serde(flatten)]
    order: Order,
}

async fn order(State(api): Api, Segment(id): Segment) -> Result<Json<OrderView>, ApiError> {
    let loaded = api.shop.order(&id).await.map_err(ApiError::internal)?;
    if loaded.version == Version::ZERO {
        return Err(OrderError::NotFound.into());
    }
    let total_cents = loaded.state.total_cents()?;
    // An amount paid that overflowed is not shown as if it were one.
    loaded.state.paid()?;
    Ok(Json(OrderView {
        order_id: id,
        version: loaded.version.get(),
        total_cents,
        order: loaded.state,
    }))
}

/// `?after=<position>` of a query.
#[derive(Debug, Deserialize)]
struct After {
    after: Option<String>,
}

impl After {
    fn position(query: Result<Query<After>, QueryRejection>) -> Result<Position, ApiError> {
        let Query(after) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
        match after.after {
            None => Ok(Position::ZERO),
            Some(text) => text
                .parse()
                .map_err(|e: eventsource_core::ParsePositionError| {
                    ApiError::bad_request("bad_position", e.to_string())
                }),
        }
    }
}

/// A read model's answer: `position` is the checkpoint it had reached.
#[derive(Debug, Serialize)]
struct AsOfJson<T> {
    position: String,
    #[serde(flatten)]
    value: T,
}

#[derive(Debug, Serialize)]
struct CustomerOrders {
    customer: String,
    orders: Vec<OrderSummary>,
}

async fn orders_of(
    State(api): Api,
    Segment(customer): Segment,
    query: Result<Query<After>, QueryRejection>,
) -> Result<Json<AsOfJson<CustomerOrders>>, ApiError> {
    let after = After::position(query)?;
    let read = api.shop.orders_of(&customer, after, api.catch_up).await?;
    Ok(Json(AsOfJson {
        position: read.position.to_string(),
        value: CustomerOrders {
            customer,
            orders: read.value,
        },
    }))
}

#[derive(Debug, Serialize)]
struct Revenue {
    revenue_cents_by_day: std::collections::BTreeMap<chrono::NaiveDate, i128>,
}

async fn revenue(
    State(api): Api,
    query: Result<Query<After>, QueryRejection>,
) -> Result<Json<AsOfJson<Revenue>>, ApiError> {
    let after = After::position(query)?;
    let read = api.shop.revenue_per_day(after, api.catch_up).await?;
    Ok(Json(AsOfJson {
        position: read.position.to_string(),
        value: Revenue {
            revenue_cents_by_day: read.value,
        },
    }))
}

/// A read model's name in a path: one the shop does not have answers `404`.
struct ReadModelName(ReadModel);

impl<S: Send + Sync> FromRequestParts<S> for ReadModelName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Segment(name) = Segment::from_request_parts(parts, state).await?;
        Ok(Self(name.parse()?))
    }
}

/// One dead letter, as `GET /read-models/{name}/dead-letters` lists it.
#[derive(Debug, Serialize)]
struct DeadLetterJson {
    event_id: String,
    stream: String,
    version: u64,
    position: String,
    event_type: String,
    reason: &'static str,
    error: String,
    attempts: u32,
    first_failed_at: chrono::DateTime<chrono::Utc>,
    last_failed_at: chrono::DateTime<chrono::Utc>,
}

impl From<eventsource_core::store::DeadLetter> for DeadLetterJson {
    fn from(letter: eventsource_core::store::DeadLetter) -> Self {
        let event = letter.event;
        Self {
            event_id: event.id.to_string(),
            stream: event.stream.to_string(),
            version: event.version.get(),
            position: event.position.to_string(),
            event_type: event.event_type,
            reason: letter.reason.as_str(),
            error: letter.error,
            attempts: letter.attempts,
            first_failed_at: letter.first_failed_at,
            last_failed_at: letter.last_failed_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct DeadLetters {
    read_model: &'static str,
    dead_letters: Vec<DeadLetterJson>,
}

async fn dead_letters(
    State(api): Api,
    ReadModelName(read_model): ReadModelName,
) -> Result<Json<DeadLetters>, ApiError> {
    let letters = api
        .shop
        .dead_letters(read_model)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(DeadLetters {
        read_model: read_model.name(),
        dead_letters: letters.into_iter().map(DeadLetterJson::from).collect(),
    }))
}

/// What `POST /read-models/{name}/dead-letters/retry` answers: the event ids of the letters
/// handled (resolved) and of those that failed again (still pending).
#[derive(Debug, Serialize)]
struct RetriedJson {
    handled: Vec<String>,
    failed: Vec<String>,
}

async fn retry_dead_letters(
    State(api): Api,
    ReadModelName(read_model): ReadModelName,
) -> Result<Json<RetriedJson>, ApiError> {
    let retried = api.shop.retry_dead_letters(read_model).await?;
    let ids = |ids: Vec<eventsource_core::EventId>| ids.iter().map(ToString::to_string).collect();
    Ok(Json(RetriedJson {
        handled: ids(retried.handled),
        failed: ids(retried.failed),
    }))
}

#[derive(Debug, Serialize)]
struct Discarded {
    discarded: usize,
}

async fn discard_dead_letters(
    State(api): Api,
    ReadModelName(read_model): ReadModelName,
) -> Result<Json<Discarded>, ApiError> {
    let discarded = api.shop.discard_dead_letters(read_model).await?;
    Ok(Json(Discarded { discarded }))
}

/// `GET /changes`: upgrades to a WebSocket that receives every read-model change as a JSON
/// text message. The subscription starts before the upgrade answers, so a client that has
/// its socket open sees every change caused by a command it sends afterwards. A read model
/// that has stopped (or stops) is told once, `{"read_model": "<name>", "stopped": "<why>"}`:
/// its changes are over.
async fn changes(
    State(api): Api,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError {
        status: e.status(),
        code: "websocket_expected",
        message: e.body_text(),
    })?;
    let changes = api.shop.changes().subscribe();
    Ok(ws.on_upgrade(move |socket| push_changes(socket, changes, api)))
}

/// What `/changes` sends when a read model stops.
#[derive(Debug, Serialize)]
struct Stopped {
    read_model: &'static str,
    stopped: String,
}

async fn push_changes(
    mut socket: WebSocket,
    mut changes: broadcast::Receiver<ReadModelChange>,
    api: Arc<OrdersApi>,
) {
    let mut stops: FuturesUnordered<_> = api.shop.stops().into_iter().collect();
    loop {
        let text = tokio::select! {
            Some((read_model, why)) = stops.next() => serde_json::to_string(&Stopped {
                read_model,
                stopped: crate::errors::error_chain(&why),
            }),
            change = changes.recv() => match change {
                Ok(change) => serde_json::to_string(&change),
                // Too slow a client loses the oldest changes; tell it, so it can re-query.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    serde_json::to_string(&serde_json::json!({ "lagged": missed }))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let Ok(text) = text else { continue };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
}

/// Any route not listed above.
async fn no_such_route(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_such_route",
        message: format!("there is no route `{method} {}`", uri.path()),
    }
}

/// A listed route asked with a method it does not have (axum adds the `allow` header).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "`{}` does not take `{method}`: the `allow` header lists what it takes",
            uri.path()
        ),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's correlation id: the caller's `x-correlation-id`, or a new one.
fn request_of(headers: &HeaderMap) -> Request {
    header(headers, "x-correlation-id")
        .and_then(|v| v.parse::<Uuid>().ok())
        .map_or_else(Request::new, Request::with_correlation_id)
}

/// An error answer: a status and `{"error": code, "message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    fn bad_request(code: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message,
        }
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        let (status, code) = match e {
            OrderError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            OrderError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            OrderError::TooLarge { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "too_large"),
            // Not the client's doing: the log holds events the shop's rules refuse.
            OrderError::HistoryOverflows { .. } => {
                tracing::error!(error = %e, "an order's history does not add up");
                (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_order")
            }
            _ => (StatusCode::CONFLICT, "rule_violated"),
        };
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl From<CommandError<OrderError>> for ApiError {
    fn from(e: CommandError<OrderError>) -> Self {
        match e {
            CommandError::Rejected(e) => e.into(),
            e @ CommandError::RetriesExhausted { .. } => Self {
                status: StatusCode::CONFLICT,
                code: "conflict",
                message: e.to_string(),
            },
            // Event ids are random but under an idempotency key: this one was taken by
            // another request that raced this one.
            CommandError::Failed(eventsource_core::Error::Store(
                e @ StoreError::EventIdReused { .. },
            )) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "idempotency_key_reused",
                message: e.to_string(),
            },
            e => Self::internal(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        // axum tells syntax errors (400) from well-formed JSON of the wrong shape (422).
        let code = match e {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ => "malformed_body",
        };
        Self {
            status: e.status(),
            code,
            message: e.body_text(),
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            e @ ProjectionError::Timeout { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_caught_up",
                message: e.to_string(),
            },
            // A retry or a discard asked of a runner that does not run the projection now
            // (it is waiting out a fault): later, it will.
            e @ ProjectionError::NotLeading { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_leading",
                message: e.to_string(),
            },
            // Says why: the cause (the event it stopped on) is the part a reader needs.
            e @ ProjectionError::Stopped { .. } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "read_model_stopped",
                message: format!(
                    "the read model has stopped: {}",
                    crate::errors::error_chain(&e)
                ),
            },
            e => Self::internal(e),
        }
    }
}

impl From<UnknownReadModel> for ApiError {
    fn from(e: UnknownReadModel) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "no_such_read_model",
            message: e.to_string(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self {
            status: e.status(),
            code: "bad_path",
            message: e.body_text(),
        }
    }
}
