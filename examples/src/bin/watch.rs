//! Prints what a WebSocket pushes, one message a line: `cargo run -p eventsource-examples --bin
//! watch -- ws://127.0.0.1:3000/changes` follows the shop's read-model changes live.
//!
//! Takes the URL (default `ws://127.0.0.1:3000/changes`), says on stderr once it is connected,
//! then prints each text message on stdout until the server closes the socket or Ctrl-C.

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:3000/changes".to_owned());
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    eprintln!("Watching {url}: one JSON message a line (Ctrl-C to stop).");
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => println!("{}", text.as_str()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    eprintln!("The server closed the socket.");
    Ok(())
}
