//! Load-test baseline for `GET /p`: the per-request work of ingest on axum and tokio, without Python.
//!
//! For each request it percent-decodes the query string into `params` and builds the event
//! JSON: UUIDv7 `event_id` and Unix ms `timestamp` from one clock reading, client address,
//! headers, path and host. It appends the line to an in-memory queue and responds with
//! `{"event_id": ...}`. A background task drains the queue to a file every 10 ms with one
//! write and no fsync, so the file write stays off the request path.
//!
//! Usage: baseline-rust PORT OUTPUT_FILE

use std::net::{IpAddr, SocketAddr};
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

/// Builds the event of one `GET /p` request and return its `event_id` and JSON object.
fn build_event(peer: IpAddr, uri: &Uri, headers: &HeaderMap, now: Duration) -> (String, Value) {
    // application/x-www-form-urlencoded rules: `+` is a space and `%XX` escapes are decoded.
    let params: Map<String, Value> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect();
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
        "ip": peer.to_string(),
        "user_agent": header_text(headers, header::USER_AGENT),
        "referer": header_text(headers, header::REFERER),
        "accept_language": header_text(headers, header::ACCEPT_LANGUAGE),
        "request_path": uri.path(),
        "request_host": header_text(headers, header::HOST),
        "params": params,
    });
    (event_id, event)
}

async fn postback(
    State(queue): State<Queue>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (event_id, event) = build_event(peer.ip(), &uri, &headers, now);

    let mut line = match serde_json::to_vec(&event) {
        Ok(line) => line,
        Err(error) => {
            eprintln!("encoding event {event_id} failed: {error}");
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
    };
    line.push(b'\n');
    // The lock is held only for one append, never across an await.
    match queue.lock() {
        Ok(mut pending) => pending.extend_from_slice(&line),
        Err(_) => {
            eprintln!("queueing event {event_id} failed: the event queue lock is poisoned");
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, String::new());
        }
    }

    let body = serde_json::json!({ "event_id": event_id }).to_string();
    json_response(StatusCode::OK, body)
}

/// Appends the queued lines to `output` every `DRAIN_INTERVAL`, one write per non-empty batch.
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
            eprintln!("listening on 127.0.0.1:{port} failed: {error}");
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
            eprintln!("opening the event file {path} failed: {error}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn event_for(target: &str, headers: &[(header::HeaderName, &str)]) -> (String, Value) {
        let uri: Uri = target.parse().expect("test URI is valid");
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(name.clone(), value.parse().expect("test header is valid"));
        }
        let now = Duration::from_millis(1_764_806_400_123);
        build_event(IpAddr::V4(Ipv4Addr::LOCALHOST), &uri, &map, now)
    }

    #[test]
    fn event_decodes_query_params() {
        let (_, event) = event_for("/p?key_prefix=bench&click_id=a%20b+c&euro=%E2%82%AC", &[]);

        assert_eq!(event["params"]["key_prefix"], "bench");
        assert_eq!(event["params"]["click_id"], "a b c");
        assert_eq!(event["params"]["euro"], "\u{20ac}");
        assert_eq!(event["request_path"], "/p");
    }

    #[test]
    fn event_id_is_uuid7_of_timestamp() {
        let (event_id, event) = event_for("/p?key_prefix=bench", &[]);
        let parsed = Uuid::parse_str(&event_id).expect("event_id is a UUID");

        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(event["event_id"], event_id.as_str());
        assert_eq!(event["timestamp"], 1_764_806_400_123_u64);
        let (seconds, nanos) = parsed
            .get_timestamp()
            .expect("v7 has a timestamp")
            .to_unix();
        assert_eq!(
            seconds * 1000 + u64::from(nanos) / 1_000_000,
            1_764_806_400_123
        );
    }

    #[test]
    fn event_copies_request_headers() {
        let (_, event) = event_for(
            "/p",
            &[
                (header::USER_AGENT, "Mozilla/5.0"),
                (header::REFERER, "https://news.example/"),
                (header::ACCEPT_LANGUAGE, "en-US"),
                (header::HOST, "track.example"),
            ],
        );

        assert_eq!(event["ip"], "127.0.0.1");
        assert_eq!(event["user_agent"], "Mozilla/5.0");
        assert_eq!(event["referer"], "https://news.example/");
        assert_eq!(event["accept_language"], "en-US");
        assert_eq!(event["request_host"], "track.example");
        assert_eq!(event["event_type"], "postback");
    }

    #[test]
    fn event_without_headers_has_empty_fields() {
        let (_, event) = event_for("/p", &[]);

        assert_eq!(event["user_agent"], "");
        assert_eq!(event["params"], serde_json::json!({}));
    }
}
