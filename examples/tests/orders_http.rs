//! The shop's HTTP service, end to end: a real server on a loopback port, a real HTTP client
//! and a real WebSocket client, on both stores.

// The helpers below run outside `#[test]` functions; a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use eventsource_core::{
    Aggregate, AnyStore, EventStore, ExpectedVersion, NewEvent, Position, StreamWrite,
};
use eventsource_examples::orders::{Order, OrdersApi, Shop};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// A running server: its address, and the switch that stops it.
struct Server {
    address: String,
    /// The service: its shop is what an operator reaches beside the routes.
    api: Arc<OrdersApi>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    async fn start(store: AnyStore) -> Self {
        let shop = Shop::start(store).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let api = Arc::new(OrdersApi::new(shop, Duration::from_secs(10)));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(Arc::clone(&api).serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            address,
            api,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// A WebSocket on `/changes`.
    async fn changes(&self) -> Changes {
        let url = format!("ws://{}/changes", self.address);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Places an order for `customer` and returns its id.
    async fn place(&self, customer: &str) -> String {
        let (status, placed) = self.post("/orders", json!({ "customer": customer })).await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        placed["order_id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Changes =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message on `changes`, as JSON (within 10 s).
async fn next_json(changes: &mut Changes) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

fn position(answer: &Value) -> Position {
    answer["position"].as_str().unwrap().parse().unwrap()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

// --- read your writes, push -----------------------------------------------------------------

#[tokio::test]
async fn a_get_after_a_post_sees_its_write_on_the_in_memory_store() {
    reads_its_own_writes_and_pushes_changes(common::in_memory()).await;
}

#[tokio::test]
async fn a_get_after_a_post_sees_its_write_on_postgres() {
    reads_its_own_writes_and_pushes_changes(common::postgres("orders_http_ryw").await).await;
}

async fn reads_its_own_writes_and_pushes_changes(store: AnyStore) {
    let server = Server::start(store).await;
    let (mut changes, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/changes", server.address))
            .await
            .unwrap();

    let ada = unique("ada");
    let id = server.place(&ada).await;
    let line = json!({ "sku": "tea", "quantity": 2, "unit_price_cents": 450 });
    let (status, added) = server.post(&format!("/orders/{id}/lines"), line).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["version"], 2);
    let written = position(&added);

    // The read model is asked for the position the command returned: it answers only once it
    // reflects that write.
    let (status, read) = server
        .get(&format!("/customers/{ada}/orders?after={written}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(position(&read) >= written);
    let orders = read["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{read}");
    assert_eq!(orders[0]["order_id"], id);
    assert_eq!(orders[0]["total_cents"], 900);
    assert_eq!(orders[0]["status"], "open");

    // The same change was pushed over the WebSocket as the projection applied it.
    let pushed = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("a change is pushed within 10 s")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let change: Value = serde_json::from_str(text.as_str()).unwrap();
        if change["read_model"] == "orders_by_customer"
            && change["order"]["version"] == 2
            && change["order"]["order_id"] == id
        {
            break change;
        }
    };
    assert_eq!(pushed["order"]["total_cents"], 900);
    assert_eq!(pushed["position"], written.to_string());
}

// --- an order's whole life --------------------------------------------------------------------

#[tokio::test]
async fn an_order_is_placed_paid_and_shipped_on_the_in_memory_store() {
    order_life(common::in_memory()).await;
}

#[tokio::test]
async fn an_order_is_placed_paid_and_shipped_on_postgres() {
    order_life(common::postgres("orders_http_life").await).await;
}

async fn order_life(store: AnyStore) {
    let server = Server::start(store).await;
    let bea = unique("bea");
    let id = server.place(&bea).await;
    for (sku, quantity, price) in [("tea", 2, 450), ("cake", 1, 300), ("jam", 1, 500)] {
        let line = json!({ "sku": sku, "quantity": quantity, "unit_price_cents": price });
        assert_eq!(
            server.post(&format!("/orders/{id}/lines"), line).await.0,
            StatusCode::OK
        );
    }
    let (status, _) = server
        .post(
            &format!("/orders/{id}/lines/remove"),
            json!({ "sku": "jam" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server
            .post(&format!("/orders/{id}/submit"), json!({}))
            .await
            .0,
        StatusCode::OK
    );

    // No changes after submit, no shipping before payment, no paying the wrong amount.
    let (status, refused) = server
        .post(
            &format!("/orders/{id}/lines"),
            json!({ "sku": "jam", "quantity": 1, "unit_price_cents": 500 }),
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::CONFLICT, Some("rule_violated"))
    );
    let (status, refused) = server.post(&format!("/orders/{id}/ship"), json!({})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::CONFLICT, Some("rule_violated"))
    );
    let (status, _) = server
        .post(&format!("/orders/{id}/pay"), json!({ "amount_cents": 1 }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, paid) = server
        .post(
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 1200 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let (status, shipped) = server.post(&format!("/orders/{id}/ship"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shipped["version"], 8);
    assert!(position(&shipped) > position(&paid));

    let (status, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            order["status"].as_str(),
            order["version"].as_u64(),
            order["total_cents"].as_i64()
        ),
        (Some("shipped"), Some(8), Some(1200))
    );

    let (status, read) = server
        .get(&format!(
            "/customers/{bea}/orders?after={}",
            position(&shipped)
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["orders"][0]["status"], "shipped");
    assert_eq!(
        read["orders"][0]["lines"],
        json!({ "cake": 300, "tea": 900 })
    );

    // Revenue counts the payment on the day it was recorded. A second order is paid, then
    // cancelled: its refund is taken off again.
    let other = server.place(&bea).await;
    server
        .post(
            &format!("/orders/{other}/lines"),
            json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 450 }),
        )
        .await;
    server
        .post(&format!("/orders/{other}/submit"), json!({}))
        .await;
    server
        .post(
            &format!("/orders/{other}/pay"),
            json!({ "amount_cents": 450 }),
        )
        .await;
    let (status, cancelled) = server
        .post(
            &format!("/orders/{other}/cancel"),
            json!({ "reason": "out of stock" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, revenue) = server
        .get(&format!("/revenue?after={}", position(&cancelled)))
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    let total: i64 = revenue["revenue_cents_by_day"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(total, 1200, "{revenue}");
}

// --- concurrent writers -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_order_all_land_on_the_in_memory_store() {
    concurrent_commands_all_land(common::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_order_all_land_on_postgres() {
    concurrent_commands_all_land(common::postgres("orders_http_concurrent").await).await;
}

/// Ten clients add a line each to the same order at once. Their appends conflict; each loser
/// reloads the order and decides again, so every line lands, each at its own version.
async fn concurrent_commands_all_land(store: AnyStore) {
    let server = Arc::new(Server::start(store).await);
    let id = server.place("eve").await;
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let (server, id) = (Arc::clone(&server), id.clone());
            tokio::spawn(async move {
                let line =
                    json!({ "sku": format!("sku-{i}"), "quantity": 1, "unit_price_cents": 100 });
                server.post(&format!("/orders/{id}/lines"), line).await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for client in clients {
        let (status, added) = client.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{added}");
        versions.push(added["version"].as_u64().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=11).collect::<Vec<_>>(),
        "one version each, no gaps"
    );
    let (_, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(
        (order["version"].as_u64(), order["total_cents"].as_i64()),
        (Some(11), Some(1000))
    );
}

// --- errors -------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("cy").await;

    let (status, error) = server.post("/orders/no-such-order/submit", json!({})).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = server.get("/orders/no-such-order").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let response = server
        .http
        .post(server.url(&format!("/orders/{id}/lines")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "malformed_body");

    let (status, error) = server
        .post(&format!("/orders/{id}/lines"), json!({ "sku": "tea" }))
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("malformed_body"))
    );
    let (status, error) = server
        .post(
            &format!("/orders/{id}/lines"),
            json!({ "sku": "tea", "quantity": 0, "unit_price_cents": 1 }),
        )
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid"))
    );

    let (status, error) = server.get("/customers/cy/orders?after=yesterday").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_position"))
    );
}

#[test]
fn a_command_that_keeps_conflicting_answers_409() {
    use axum::response::IntoResponse;
    use eventsource_core::{CommandError, StreamId};
    use eventsource_examples::orders::OrderError;
    use eventsource_examples::orders::http::ApiError;

    let exhausted = CommandError::<OrderError>::RetriesExhausted {
        stream: StreamId::new("order-1"),
        attempts: 16,
    };
    let response = ApiError::from(exhausted).into_response();
    assert_eq!(response.status().as_u16(), 409);
}

#[tokio::test]
async fn a_query_waits_only_so_long_for_a_position_not_reached() {
    let shop = Shop::start(common::in_memory()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let api = Arc::new(OrdersApi::new(shop, Duration::from_millis(100)));
    tokio::spawn(api.serve(listener, std::future::pending()));
    let response = reqwest::get(format!("http://{address}/revenue?after=999999.1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "not_caught_up");
}

#[tokio::test]
async fn a_retried_request_with_an_idempotency_key_commits_once() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("dee").await;
    let add = || {
        server
            .http
            .post(server.url(&format!("/orders/{id}/lines")))
            .header("idempotency-key", "add-tea-1")
            .json(&json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 450 }))
            .send()
    };
    let first: Value = add().await.unwrap().json().await.unwrap();
    let again = add().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the retry is not refused as a duplicate line"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again, "the retry returns the first commit");
    let (_, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(order["version"], 2);
}

#[tokio::test]
async fn a_quantity_below_one_is_an_invalid_value_whatever_its_sign() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("gus").await;
    let lines = format!("/orders/{id}/lines");
    for quantity in [
        json!(0),
        json!(-2),
        json!(i64::MIN),
        json!(u64::from(u32::MAX) + 1),
    ] {
        let line = json!({ "sku": "tea", "quantity": quantity, "unit_price_cents": 450 });
        let (status, error) = server.post(&lines, line).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
            "quantity {quantity}: {error}"
        );
    }
    // Not a whole number at all: the body has the wrong shape.
    let line = json!({ "sku": "tea", "quantity": 1.5, "unit_price_cents": 450 });
    let (status, error) = server.post(&lines, line).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("malformed_body"))
    );
}

#[tokio::test]
async fn a_negative_payment_is_an_invalid_value() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("hal").await;
    server
        .post(
            &format!("/orders/{id}/lines"),
            json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 450 }),
        )
        .await;
    server
        .post(&format!("/orders/{id}/submit"), json!({}))
        .await;
    let (status, error) = server
        .post(
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": -450 }),
        )
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_has_its_own_code() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("fay").await;
    let response = server
        .http
        .post(server.url(&format!("/orders/{id}/lines")))
        .header("content-type", "text/plain")
        .body(r#"{"sku":"tea","quantity":1,"unit_price_cents":450}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unsupported_media_type");
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_bad_paths_answer_json_errors() {
    let server = Server::start(common::in_memory()).await;
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        let allow = response.headers().get("allow").cloned();
        let body = response.text().await.unwrap();
        let error: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: not JSON: {body:?}"));
        assert!(error["message"].is_string(), "{error}");
        (status, error["error"].as_str().map(str::to_owned), allow)
    };

    let (status, code, _) = answer(
        server
            .http
            .get(server.url("/no/such/route"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::NOT_FOUND, Some("no_such_route"))
    );

    let (status, code, allow) = answer(
        server
            .http
            .delete(server.url("/orders"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    assert_eq!(allow.unwrap(), "POST");

    let (status, code, _) = answer(
        server
            .http
            .get(server.url("/changes"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::BAD_REQUEST, Some("websocket_expected"))
    );

    // `%FF` decodes to a byte that is not UTF-8.
    let (status, code, _) = answer(
        server
            .http
            .get(server.url("/orders/%FF"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::BAD_REQUEST, Some("bad_path"))
    );
}

// --- amounts that do not fit ----------------------------------------------------------------

#[tokio::test]
async fn a_line_whose_total_would_overflow_is_refused_and_the_shop_keeps_serving() {
    let server = Server::start(common::in_memory()).await;
    let ada = unique("ada");
    let id = server.place(&ada).await;
    let lines = format!("/orders/{id}/lines");

    let gold = json!({ "sku": "gold", "quantity": u32::MAX, "unit_price_cents": i64::MAX });
    let (status, error) = server.post(&lines, gold).await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_large")),
        "{error}"
    );
    // The largest line there is fits; a cent more on the order does not.
    let (status, added) = server
        .post(
            &lines,
            json!({ "sku": "gold", "quantity": 1, "unit_price_cents": i64::MAX }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let (status, error) = server
        .post(
            &lines,
            json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 1 }),
        )
        .await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_large")),
        "{error}"
    );

    // The order, its submission and the read model all still answer.
    let (status, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["total_cents"], i64::MAX);
    let (status, submitted) = server
        .post(&format!("/orders/{id}/submit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{submitted}");
    let (status, read) = server
        .get(&format!(
            "/customers/{ada}/orders?after={}",
            position(&submitted)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["orders"][0]["total_cents"], i64::MAX);
}

#[tokio::test]
async fn an_event_whose_amounts_overflow_in_the_log_is_dead_lettered_and_retried_once_fixed_on_the_in_memory_store()
 {
    a_poisoned_log_is_served(common::in_memory()).await;
}

#[tokio::test]
async fn an_event_whose_amounts_overflow_in_the_log_is_dead_lettered_and_retried_once_fixed_on_postgres()
 {
    a_poisoned_log_is_served(common::postgres("orders_http_poisoned").await).await;
}

/// The pending dead letters of read model `name`, as the service lists them.
async fn letters(server: &Server, name: &str) -> Vec<Value> {
    let (status, listed) = server
        .get(&format!("/read-models/{name}/dead-letters"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["read_model"], name, "{listed}");
    listed["dead_letters"].as_array().unwrap().clone()
}

/// An order whose line's total overflows is written straight into the store, as a version of
/// the shop without the rule (or a hand) could have: no decision ever sees it; then a later
/// event of that order. The service starts anyway, at every start, and answers: the read model
/// parks the line in its dead letters, and the order's later event behind it, and goes on with
/// the other orders. A retry fails until the fix is deployed; then it applies both.
async fn a_poisoned_log_is_served(store: AnyStore) {
    let ada = unique("ada");
    let poisoned = uuid::Uuid::new_v4().to_string();
    let event = |event_type: &str, payload: Value| {
        NewEvent::new(event_type, 1, serde_json::to_vec(&payload).unwrap())
    };
    let gold = event(
        "order.line_added",
        json!({ "sku": "gold", "quantity": u32::MAX, "unit_price_cents": i64::MAX }),
    );
    let submitted = event("order.submitted", json!({ "total_cents": 0 }));
    let (gold_id, submitted_id) = (gold.id.to_string(), submitted.id.to_string());
    store
        .append(vec![StreamWrite::new(
            Order::stream_id(&poisoned),
            ExpectedVersion::NoStream,
            vec![
                event("order.placed", json!({ "customer": ada })),
                gold,
                submitted,
            ],
        )])
        .await
        .unwrap();

    for start in 0..2 {
        let server = Server::start(store.clone()).await;

        // Commands, and both read models, go on.
        let healthy = server.place(&ada).await;
        let (status, added) = server
            .post(
                &format!("/orders/{healthy}/lines"),
                json!({ "sku": "tea", "quantity": 2, "unit_price_cents": 450 }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{added}");
        let (status, revenue) = server
            .get(&format!("/revenue?after={}", position(&added)))
            .await;
        assert_eq!(status, StatusCode::OK, "{revenue}");
        let (status, read) = server
            .get(&format!(
                "/customers/{ada}/orders?after={}",
                position(&added)
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{read}");
        let orders = read["orders"].as_array().unwrap();
        // One healthy order per start so far, and the poisoned one as it was before its line:
        // placed, no line, not submitted.
        assert_eq!(orders.len(), start + 2, "{read}");
        let row = |id: &str| orders.iter().find(|o| o["order_id"] == id).unwrap().clone();
        let ok = row(&healthy);
        assert_eq!(
            (&ok["total_cents"], &ok["total_overflowed"], &ok["version"]),
            (&json!(900), &json!(false), &json!(2)),
            "{ok}"
        );
        let before = row(&poisoned);
        assert_eq!(
            (&before["status"], &before["lines"], &before["version"]),
            (&json!("open"), &json!({}), &json!(1)),
            "{before}"
        );

        // The poisoned order answers JSON errors, never a closed connection.
        let (status, error) = server.get(&format!("/orders/{poisoned}")).await;
        assert_eq!(
            (status, error["error"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("corrupt_order")),
            "{error}"
        );

        // The dead letters say what the read model passed by, and why; the store keeps them
        // across starts (each start's rebuild meets the line again: one attempt more).
        let listed = letters(&server, "orders_by_customer").await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        let (line, parked) = (&listed[0], &listed[1]);
        assert_eq!(
            (
                line["event_id"].as_str(),
                line["event_type"].as_str(),
                line["reason"].as_str(),
                line["stream"].as_str(),
                line["version"].as_u64(),
            ),
            (
                Some(gold_id.as_str()),
                Some("order.line_added"),
                Some("failed"),
                Some(format!("order-{poisoned}").as_str()),
                Some(2)
            ),
            "{line}"
        );
        assert!(
            line["error"].as_str().unwrap().contains("overflows"),
            "{line}"
        );
        assert!(line["attempts"].as_u64().unwrap() > start as u64, "{line}");
        assert!(
            line["position"]
                .as_str()
                .unwrap()
                .parse::<Position>()
                .is_ok()
        );
        for time in ["first_failed_at", "last_failed_at"] {
            let time = line[time].as_str().unwrap();
            assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        }
        assert_eq!(
            (
                parked["event_id"].as_str(),
                parked["reason"].as_str(),
                parked["version"].as_u64()
            ),
            (Some(submitted_id.as_str()), Some("parked"), Some(3)),
            "{parked}"
        );
        assert_eq!(
            letters(&server, "revenue_per_day").await,
            Vec::<Value>::new()
        );

        // Retried before the fix, the line fails again; its stream's later letter waits.
        let (status, retried) = server
            .post(
                "/read-models/orders_by_customer/dead-letters/retry",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(
            retried,
            json!({ "handled": [], "failed": [gold_id] }),
            "{retried}"
        );
        assert_eq!(letters(&server, "orders_by_customer").await.len(), 2);

        if start == 0 {
            // Not fixed yet: the next start finds the letters again.
            continue;
        }

        // The fix is deployed: a retry applies the line, clamped and flagged, and the event
        // parked behind it, in order; a subscriber is pushed the row.
        let mut changes = server.changes().await;
        server.api.shop().saturate_totals();
        let (status, retried) = server
            .post(
                "/read-models/orders_by_customer/dead-letters/retry",
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(
            retried,
            json!({ "handled": [gold_id, submitted_id], "failed": [] }),
            "{retried}"
        );
        let pushed = loop {
            let change = next_json(&mut changes).await;
            if change["order"]["order_id"] == poisoned.as_str() && change["order"]["version"] == 3 {
                break change;
            }
        };
        assert_eq!(pushed["order"]["total_overflowed"], true, "{pushed}");
        assert_eq!(
            letters(&server, "orders_by_customer").await,
            Vec::<Value>::new()
        );

        let (status, read) = server.get(&format!("/customers/{ada}/orders")).await;
        assert_eq!(status, StatusCode::OK, "{read}");
        let after = read["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["order_id"] == poisoned.as_str())
            .unwrap()
            .clone();
        assert_eq!(
            after,
            json!({
                "order_id": poisoned,
                "customer": ada,
                "status": "submitted",
                "total_cents": i64::MAX,
                "lines": { "gold": i64::MAX },
                "total_overflowed": true,
                "version": 3,
            })
        );
    }
}

#[tokio::test]
async fn an_undecodable_event_is_dead_lettered_by_both_read_models_and_discarded() {
    let store = common::in_memory();
    let server = Server::start(store.clone()).await;
    let mut changes = server.changes().await;
    // A payment whose amount is not a number: no decision writes it, its handlers cannot
    // read it.
    let by_hand = unique("by-hand");
    let paid = NewEvent::new("order.paid", 1, br#"{"amount_cents":"lots"}"#.to_vec());
    let paid_id = paid.id.to_string();
    let commit = store
        .append(vec![StreamWrite::new(
            Order::stream_id(&by_hand),
            ExpectedVersion::NoStream,
            vec![paid],
        )])
        .await
        .unwrap();

    // Both read models take payments: both pass it by and go on answering.
    let (status, revenue) = server
        .get(&format!("/revenue?after={}", commit.position))
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    assert_eq!(revenue["revenue_cents_by_day"], json!({}), "{revenue}");
    let (status, read) = server
        .get(&format!(
            "/customers/nobody/orders?after={}",
            commit.position
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    for name in ["orders_by_customer", "revenue_per_day"] {
        let listed = letters(&server, name).await;
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
        let letter = &listed[0];
        assert_eq!(
            (
                letter["event_id"].as_str(),
                letter["event_type"].as_str(),
                letter["reason"].as_str(),
                letter["position"].as_str(),
                letter["attempts"].as_u64(),
            ),
            (
                Some(paid_id.as_str()),
                Some("order.paid"),
                Some("failed"),
                Some(commit.position.to_string().as_str()),
                Some(1)
            ),
            "{name}: {letter}"
        );
        assert!(!letter["error"].as_str().unwrap().is_empty(), "{letter}");
    }

    // Nothing to fix there: an operator discards it, in each read model.
    for name in ["orders_by_customer", "revenue_per_day"] {
        let (status, discarded) = server
            .post(
                &format!("/read-models/{name}/dead-letters/discard"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, discarded),
            (StatusCode::OK, json!({ "discarded": 1 })),
            "{name}"
        );
        assert_eq!(letters(&server, name).await, Vec::<Value>::new(), "{name}");
        let (status, retried) = server
            .post(
                &format!("/read-models/{name}/dead-letters/retry"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, retried),
            (StatusCode::OK, json!({ "handled": [], "failed": [] })),
            "{name}"
        );
    }

    // Neither read model stopped: a subscriber listening all along is told no stop, and is
    // pushed the next change.
    let lea = unique("lea");
    server.place(&lea).await;
    let next = next_json(&mut changes).await;
    assert_eq!(
        (
            next["read_model"].as_str(),
            next["order"]["customer"].as_str()
        ),
        (Some("orders_by_customer"), Some(lea.as_str())),
        "{next}"
    );
}

#[tokio::test]
async fn the_dead_letters_of_a_read_model_the_shop_does_not_have_are_not_found() {
    let server = Server::start(common::in_memory()).await;
    let (status, error) = server.get("/read-models/nope/dead-letters").await;
    assert_eq!(
        (status, error["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_read_model")),
        "{error}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("nope"),
        "{error}"
    );
    for action in ["retry", "discard"] {
        let (status, error) = server
            .post(
                &format!("/read-models/nope/dead-letters/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, error["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("no_such_read_model")),
            "{action}: {error}"
        );
    }
    // The route takes the methods it lists, like the others.
    let response = server
        .http
        .delete(server.url("/read-models/orders_by_customer/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

// --- idempotency keys -----------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_reused_for_another_request_is_refused() {
    let server = Server::start(common::in_memory()).await;
    let id = server.place("ida").await;
    let add = |body: Value| {
        server
            .http
            .post(server.url(&format!("/orders/{id}/lines")))
            .header("idempotency-key", "add-1")
            .json(&body)
            .send()
    };
    let tea = json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 450 });
    let first = add(tea.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();

    let cake = json!({ "sku": "cake", "quantity": 1, "unit_price_cents": 300 });
    let reused = add(cake).await.unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error: Value = reused.json().await.unwrap();
    assert_eq!(error["error"], "idempotency_key_reused", "{error}");

    // The same request again is a retry: it still answers the first commit.
    let again = add(tea).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let (_, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(order["version"], 2);
    assert_eq!(order["lines"].as_object().unwrap().len(), 1, "{order}");

    // The key names that request: another command, or the same one on another order, is
    // another request.
    let other = server.place("ida").await;
    for path in [
        format!("/orders/{id}/submit"),
        format!("/orders/{other}/lines"),
    ] {
        let response = server
            .http
            .post(server.url(&path))
            .header("idempotency-key", "add-1")
            .json(&json!({ "sku": "tea", "quantity": 1, "unit_price_cents": 450 }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
    }
    let (_, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(order["status"], "open", "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_on_one_idempotency_key_commit_one_of_them_on_the_in_memory_store() {
    racing_on_one_key(common::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_on_one_idempotency_key_commit_one_of_them_on_postgres() {
    racing_on_one_key(common::postgres("orders_http_key_race").await).await;
}

/// Eight different requests under one key at once: one commits, the others are told the key
/// is taken, however their attempts interleave.
async fn racing_on_one_key(store: AnyStore) {
    let server = Arc::new(Server::start(store).await);
    let id = server.place("ivy").await;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (server, id) = (Arc::clone(&server), id.clone());
            tokio::spawn(async move {
                let line =
                    json!({ "sku": format!("sku-{i}"), "quantity": 1, "unit_price_cents": 100 });
                let response = server
                    .http
                    .post(server.url(&format!("/orders/{id}/lines")))
                    .header("idempotency-key", "race")
                    .json(&line)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.push(client.await.unwrap());
    }
    let committed = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, e)| {
            *s == StatusCode::UNPROCESSABLE_ENTITY && e["error"] == "idempotency_key_reused"
        })
        .count();
    assert_eq!((committed, refused), (1, 7), "{answers:?}");
    let (_, order) = server.get(&format!("/orders/{id}")).await;
    assert_eq!(order["version"], 2, "{order}");
}

#[tokio::test]
async fn placing_an_order_under_an_idempotency_key_places_it_once() {
    let server = Server::start(common::in_memory()).await;
    let jo = unique("jo");
    let place = |customer: &str| {
        server
            .http
            .post(server.url("/orders"))
            .header("idempotency-key", "place-1")
            .json(&json!({ "customer": customer }))
            .send()
    };
    let first = place(&jo).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = place(&jo).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again, "the retry answers the order the first placed");

    let other = place("someone else").await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let (_, read) = server
        .get(&format!(
            "/customers/{jo}/orders?after={}",
            position(&first)
        ))
        .await;
    assert_eq!(read["orders"].as_array().unwrap().len(), 1, "{read}");
}

// --- the watch client -----------------------------------------------------------------------

/// `cargo run -p eventsource-examples --bin watch -- ws://…/changes`, as the README and the
/// banner say, prints the changes pushed.
#[tokio::test]
async fn the_watch_client_prints_the_changes_pushed() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let server = Server::start(common::in_memory()).await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_watch"))
        .arg(format!("ws://{}/changes", server.address))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let within = Duration::from_secs(10);
    let mut said = BufReader::new(watch.stderr.take().unwrap()).lines();
    let connected = tokio::time::timeout(within, said.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(connected.starts_with("Watching ws://"), "{connected}");

    let kim = unique("kim");
    server.place(&kim).await;
    let mut printed = BufReader::new(watch.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(within, printed.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let change: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (
            change["read_model"].as_str(),
            change["order"]["customer"].as_str()
        ),
        (Some("orders_by_customer"), Some(kim.as_str())),
        "{change}"
    );
}
