//! The shop's HTTP service: `cargo run -p eventsource-examples --bin orders [ADDRESS]`.
//!
//! Listens on ADDRESS (default `127.0.0.1:3000`; `ORDERS_ADDR` works too; port 0 picks a free
//! port). Runs on the embedded in-memory store, or on PostgreSQL when `DATABASE_URL` is set.

use std::sync::Arc;

use eventsource_examples::orders::http::DEFAULT_CATCH_UP;
use eventsource_examples::orders::{OrdersApi, Shop, run_walkthrough};
use eventsource_examples::store;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Logs (a read model passing an event by into its dead letters, say) go to stderr:
        // stdout is the tour.
        .with_writer(std::io::stderr)
        .init();
    let address = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("ORDERS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let chosen = store::from_env().await?;
    let shop = Shop::start(chosen.store).await?;
    println!("A shop, event-sourced. Store: {}.", chosen.description);
    match run_walkthrough(&shop).await {
        Ok(tour) => print!("{tour}"),
        // A read model stopped (a handler's panic, a store failure), say: the service still
        // serves what it can, and its answers say what it cannot and why.
        Err(e) => println!(
            "\nThe tour stopped: {}. Serving anyway.",
            eventsource_examples::errors::error_chain(&e)
        ),
    }
    let listener = TcpListener::bind(&address).await?;
    let address = listener.local_addr()?;
    let base = format!("http://{address}");
    println!("\nThe shop is open at {base}. Try:");
    println!(
        "  curl -s -XPOST {base}/orders -H 'content-type: application/json' -d '{{\"customer\":\"ada\"}}'"
    );
    println!(
        "  curl -s -XPOST {base}/orders/<order_id>/lines -H 'content-type: application/json' -d '{{\"sku\":\"tea\",\"quantity\":2,\"unit_price_cents\":450}}'"
    );
    println!("  curl -s '{base}/customers/ada/orders?after=<position from the answer>'");
    println!(
        "  curl -s {base}/read-models/orders_by_customer/dead-letters   # events a read model passed by"
    );
    println!(
        "  cargo run -p eventsource-examples --bin watch -- ws://{address}/changes   # read-model changes, live"
    );
    let api = Arc::new(OrdersApi::new(shop, DEFAULT_CATCH_UP));
    api.serve(listener, async {
        // Without a signal handler we simply run until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await?;
    Ok(())
}
