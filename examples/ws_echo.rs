//! The WebSocket side of `bench/websocket.sh`: an echo server, and a load client that counts
//! echo round trips.
//!
//! ```text
//! cargo run --release --example ws_echo -- serve 127.0.0.1:19101
//! cargo run --release --example ws_echo -- load ws://127.0.0.1:19101/ CONNECTIONS SECONDS BYTES
//! ```
//!
//! `load` opens the connections, then each sends a binary message of BYTES, waits for its
//! echo and sends the next, for SECONDS; it prints round trips per second (all connections
//! together) on one line. Both run on one thread each (actix's runtime).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => actix_rt::System::new().block_on(serve(addr.to_owned())),
        ["load", url, connections, seconds, bytes] => {
            match (connections.parse(), seconds.parse(), bytes.parse()) {
                (Ok(c), Ok(s), Ok(b)) => actix_rt::System::new().block_on(load(url, c, s, b)),
                _ => Err("CONNECTIONS, SECONDS and BYTES are whole numbers".to_owned()),
            }
        }
        _ => {
            Err("usage: ws_echo serve ADDR | ws_echo load URL CONNECTIONS SECONDS BYTES".to_owned())
        }
    };
    if let Err(err) = result {
        eprintln!("ws_echo: {err}");
        std::process::exit(2);
    }
}

async fn serve(addr: String) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        actix_rt::spawn(async move {
            if !asks_for_websocket(&tcp).await {
                // The balancer's health probes: a plain `200`.
                let mut tcp = tcp;
                let _ = tcp.write_all(PLAIN_OK).await;
                return;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The answer to requests that are no WebSocket handshake (the balancer's health probes).
const PLAIN_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n";

/// Whether the request head waiting on `tcp` (looked at, not taken) asks for a WebSocket.
async fn asks_for_websocket(tcp: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = tcp.peek(&mut buf).await else {
            return false;
        };
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if head.contains("\r\n\r\n") || n == buf.len() || n == 0 {
            return head.contains("upgrade: websocket");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn load(url: &str, connections: usize, seconds: u64, bytes: usize) -> Result<(), String> {
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|err| format!("cannot open {url}: {err}"))?;
        sockets.push(socket);
    }
    let round_trips = Rc::new(Cell::new(0u64));
    let until = Instant::now() + Duration::from_secs(seconds);
    let payload = vec![0x5a_u8; bytes];
    let mut tasks = Vec::with_capacity(connections);
    for mut socket in sockets {
        let (round_trips, payload) = (Rc::clone(&round_trips), payload.clone());
        tasks.push(actix_rt::spawn(async move {
            while Instant::now() < until {
                if socket.send(Message::binary(payload.clone())).await.is_err() {
                    return Err("send failed".to_owned());
                }
                match socket.next().await {
                    Some(Ok(Message::Binary(echo))) if echo.len() == payload.len() => {
                        round_trips.set(round_trips.get() + 1);
                    }
                    other => return Err(format!("expected the echo, got {other:?}")),
                }
            }
            let _ = socket.close(None).await;
            Ok(())
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await.map_err(|err| err.to_string())??;
    }
    let per_sec = round_trips.get() as f64 / started.elapsed().as_secs_f64();
    println!("{per_sec:.0}");
    Ok(())
}
