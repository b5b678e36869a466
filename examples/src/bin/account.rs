//! The account walkthrough: `cargo run -p eventsource-examples --bin account`.
//!
//! Runs on the embedded in-memory store, or on PostgreSQL when `DATABASE_URL` is set.

use eventsource_examples::account::run_walkthrough;
use eventsource_examples::store;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let chosen = store::from_env().await?;
    println!("Event sourcing, one bank account at a time.");
    println!(
        "Nothing is ever updated in place: every change is an event appended to the account's \
         stream, and the account's state is the fold of its events. Store: {}.",
        chosen.description
    );
    let tour = run_walkthrough(chosen.store).await?;
    print!("{tour}");
    Ok(())
}
