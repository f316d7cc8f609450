//! Times `parse_batch` on the body of `bench/test_codec.py`: 1,000 events of 8 params.
//!
//! Run: `cargo run --release --example batch_timing [ROUNDS]`. It prints CPU time per
//! batch (the process clock, so other work on a shared machine counts less) for the
//! whole parse and for the zstd share alone, and runs under `perf record` as is.

use std::collections::HashSet;
use std::time::Instant;

use _core::batch::{parse_batch, BatchConfig};
use _core::event::{EventLimits, RequestFields};
use _core::record::encode_lines;

const EVENT: &str = concat!(
    r#"{"event_type":"page_view","params":{"key_prefix":"acme","utm_source":"newsletter","#,
    r#""utm_medium":"email","utm_campaign":"spring_sale_2026","page":"/products/shoes/running","#,
    r#""sub_id":"a1b2c3d4","variant":"B","session":"7f3e9a2c-1b4d-4e8f-9a6c-2d5e8f1a3b7c"},"#,
    r#""user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0","#,
    r#""ip":"198.51.100.23"}"#
);

const REQUEST: RequestFields<'static> = RequestFields {
    ip: "203.0.113.45",
    user_agent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0",
    referer: "https://news.example/today",
    accept_language: "en-GB,en;q=0.9",
    request_path: "/batch",
    request_host: "t.example",
};

/// Returns the CPU time of this process in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `usage`, which lives on the stack.
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut usage) };
    usage.tv_sec as f64 + usage.tv_nsec as f64 * 1e-9
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

extern "C" {
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

fn time_per_call(rounds: usize, mut work: impl FnMut()) -> (f64, f64) {
    let cpu_start = cpu_seconds();
    let wall_start = Instant::now();
    for _ in 0..rounds {
        work();
    }
    let cpu = (cpu_seconds() - cpu_start) / rounds as f64;
    let wall = wall_start.elapsed().as_secs_f64() / rounds as f64;
    (cpu, wall)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(2000);
    let body = format!("[{}]", vec![EVENT; 1000].join(","));
    let config = BatchConfig {
        limits: EventLimits::default(),
        max_events: 10_000,
        max_body_bytes: 16 << 20,
        partitions: 8,
        known_tenants: HashSet::from(["acme".to_owned(), "beta".to_owned()]),
    };

    let outcome = parse_batch(&config, body.as_bytes(), &REQUEST).expect("bench body parses");
    assert_eq!(outcome.accepted, 1000);
    let lines: Vec<u8> = _core::record::decode(&outcome.records[0].2)
        .expect("record batch decodes")
        .payload;

    let (cpu, wall) = time_per_call(rounds, || {
        let outcome = parse_batch(&config, body.as_bytes(), &REQUEST).expect("bench body parses");
        std::hint::black_box(outcome);
    });
    let (zstd_cpu, zstd_wall) = time_per_call(rounds, || {
        std::hint::black_box(encode_lines(&lines, 1000).expect("encode"));
    });
    println!(
        "batch: {:.1} us cpu ({:.0} events/s), {:.1} us wall; zstd share: {:.1} us cpu, {:.1} us wall; {} bytes of lines -> {} bytes",
        cpu * 1e6,
        1000.0 / cpu,
        wall * 1e6,
        zstd_cpu * 1e6,
        zstd_wall * 1e6,
        lines.len(),
        outcome.records[0].2.len(),
    );
}
