//! Load-test baseline for `GET /p`: the per-request work of ingest on axum and tokio, without Python.
//!
//! For each request it percent-decodes the query string into `params` and builds the event
//! JSON: UUIDv7 `event_id` and Unix ms `timestamp` from one clock reading, client address,
//! headers, path and host. It appends the line to an in-memory queue and responds with
//! `{"event_id": ...}`. A background task drains the queue to a file every 10 ms with one
//! write and no fsync, so the file write stays off the request path.
//!
//! Usage: baseline-rust PORT OUTPUT_FILE

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use uuid::{NoContext, Timestamp, Uuid};

/// Encoded events, one JSON object per line, waiting for the next drain.
type Queue = Arc<Mutex<Vec<u8>>>;

const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn postback(
    State(queue): State<Queue>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // application/x-www-form-urlencoded rules: `+` is a space and `%XX` escapes are decoded.
    let params: Map<String, Value> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let event_id = Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        now.as_secs(),
        now.subsec_nanos(),
    ))
    .to_string();
    let event = serde_json::json!({
        "event_id": event_id,
        "event_type": "postback",
        "timestamp": now.as_millis() as u64,
        "ip": peer.ip().to_string(),
        "user_agent": header_text(&headers, header::USER_AGENT),
        "referer": header_text(&headers, header::REFERER),
        "accept_language": header_text(&headers, header::ACCEPT_LANGUAGE),
        "request_path": uri.path(),
        "request_host": header_text(&headers, header::HOST),
        "params": params,
    });

    let Ok(mut line) = serde_json::to_vec(&event) else {
        return json_response(StatusCode::INTERNAL_SERVER_ERROR, String::new());
    };
    line.push(b'\n');
    // The lock is held only for one append, never across an await.
    match queue.lock() {
        Ok(mut pending) => pending.extend_from_slice(&line),
        Err(_) => {
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
    }

    let body = serde_json::json!({ "event_id": event_id }).to_string();
    json_response(StatusCode::OK, body)
}

/// Append the queued lines to `output` every `DRAIN_INTERVAL`, one write per non-empty batch.
async fn drain(queue: Queue, mut output: tokio::fs::File) -> std::io::Result<()> {
    let mut ticks = tokio::time::interval(DRAIN_INTERVAL);
    loop {
        ticks.tick().await;
        let batch = match queue.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return Err(std::io::Error::other("the event queue lock is poisoned")),
        };
        if !batch.is_empty() {
            output.write_all(&batch).await?;
            // tokio's File hands writes to a blocking thread, and flush waits until it is done.
            output.flush().await?;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, path] = args.as_slice() else {
        eprintln!("usage: baseline-rust PORT OUTPUT_FILE");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("invalid PORT {port:?}: expected an integer from 0 to 65535");
        return ExitCode::from(2);
    };

    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let output = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
    {
        Ok(file) => file,
        Err(error) => {
            eprintln!("cannot open {path}: {error}");
            return ExitCode::FAILURE;
        }
    };

    let queue: Queue = Arc::new(Mutex::new(Vec::new()));
    let drainer = tokio::spawn(drain(Arc::clone(&queue), output));
    let app = Router::new().route("/p", get(postback)).with_state(queue);
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    );

    // Whichever ends first decides the exit: a failed event write must stop the benchmark.
    tokio::select! {
        result = server => {
            if let Err(error) = result {
                eprintln!("the server failed: {error}");
                return ExitCode::FAILURE;
            }
        }
        result = drainer => {
            match result {
                Ok(Err(error)) => eprintln!("writing the event file failed: {error}"),
                Ok(Ok(())) => eprintln!("the drain task stopped"),
                Err(error) => eprintln!("the drain task panicked: {error}"),
            }
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
