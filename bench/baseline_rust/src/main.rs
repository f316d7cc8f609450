//! Load-test baseline for `GET /p`: the same per-request work as ingest, in plain Rust.
//!
//! For each request it parses the query string, builds the event JSON (UUIDv7 `event_id`,
//! server `timestamp` in Unix ms, headers, and the query as `params`), appends the line to an
//! in-memory queue, and responds with `{"event_id": ...}`. A background thread drains the queue to a
//! file every 10 ms with one write and no fsync. Connections are served one thread each over
//! `std::net` with HTTP/1.1 keep-alive, because no async runtime crate is available offline.
//!
//! Usage: baseline-rust PORT OUTPUT_FILE

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Queue = Arc<Mutex<Vec<u8>>>;

/// Return a UUIDv7 string (RFC 9562): 48-bit Unix ms, version 7, 74 random bits, variant 10.
fn uuid7(now_ms: u64) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes[6..]).is_err() {
        bytes[6..].fill(0x5a);
    }
    bytes[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                // Byte-wise, so a multi-byte character after `%` cannot split a str slice.
                let high = (bytes[i + 1] as char).to_digit(16);
                let low = (bytes[i + 2] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(stream: TcpStream, queue: Queue) {
    let peer = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }

        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let mut params = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(percent_decode(name), serde_json::Value::String(percent_decode(value)));
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let event_id = uuid7(now_ms);
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let event = serde_json::json!({
            "event_id": event_id,
            "event_type": "postback",
            "timestamp": now_ms,
            "ip": peer,
            "user_agent": header("user-agent"),
            "referer": header("referer"),
            "accept_language": header("accept-language"),
            "request_path": path,
            "request_host": header("host"),
            "params": params,
        });
        let mut encoded = serde_json::to_vec(&event).unwrap_or_default();
        encoded.push(b'\n');
        if let Ok(mut pending) = queue.lock() {
            pending.extend_from_slice(&encoded);
        }

        let body = format!("{{\"event_id\":\"{event_id}\"}}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: baseline-rust PORT OUTPUT_FILE");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(("127.0.0.1", args[1].parse::<u16>().unwrap_or(0)))
        .unwrap_or_else(|error| {
            eprintln!("cannot listen on 127.0.0.1:{}: {error}", args[1]);
            std::process::exit(1);
        });
    let mut output = OpenOptions::new().create(true).append(true).open(&args[2]).unwrap_or_else(|error| {
        eprintln!("cannot open {}: {error}", args[2]);
        std::process::exit(1);
    });

    let queue: Queue = Arc::new(Mutex::new(Vec::new()));
    let drained = Arc::clone(&queue);
    thread::spawn(move || loop {
        thread::sleep(Duration::from_millis(10));
        let batch = match drained.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if !batch.is_empty() && output.write_all(&batch).is_err() {
            eprintln!("writing the event file failed");
            std::process::exit(1);
        }
    });

    for stream in listener.incoming().flatten() {
        let queue = Arc::clone(&queue);
        thread::spawn(move || handle(stream, queue));
    }
}
