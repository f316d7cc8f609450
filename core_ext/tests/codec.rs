//! Crate-level behaviour without Python: JSON escaping, UUIDv7 order and batch parsing.

use std::collections::HashSet;

use _core::batch::{parse_batch, BatchConfig};
use _core::errors::CoreError;
use _core::event::{write_json_str, EventLimits, RequestFields};
use _core::record::decode;
use _core::uuid7::{format_uuid, new_bytes, timestamp_ms, unix_ms, IdBlock};

const REQUEST: RequestFields<'static> = RequestFields {
    ip: "203.0.113.7",
    user_agent: "agent",
    referer: "",
    accept_language: "en",
    request_path: "/batch",
    request_host: "t.example",
};

fn config(max_events: usize) -> BatchConfig {
    BatchConfig {
        limits: EventLimits::default(),
        max_events,
        max_body_bytes: 1 << 20,
        partitions: 4,
        known_tenants: HashSet::from(["acme".to_owned()]),
    }
}

#[test]
fn json_escaping_matches_serde_json() {
    let mut samples: Vec<String> = (0u32..0x80)
        .filter_map(char::from_u32)
        .map(|c| format!("ab{c}cdefghij{c}"))
        .collect();
    samples.push("plain text that is longer than one word".to_owned());
    samples.push("\u{2028}é😀\"\\\u{7f}".to_owned());
    for sample in samples {
        let mut ours = Vec::new();
        write_json_str(&mut ours, &sample);
        assert_eq!(
            ours,
            serde_json::to_vec(&sample).expect("serialise"),
            "{sample:?}"
        );
    }
}

#[test]
fn uuid7_strictly_increases_across_threads() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                (0..20_000)
                    .map(|_| format_uuid(&new_bytes()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = HashSet::new();
    for handle in handles {
        let ids = handle.join().expect("thread");
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for id in &ids {
            assert!(timestamp_ms(id).is_ok());
        }
        all.extend(ids);
    }
    assert_eq!(all.len(), 80_000);
}

#[test]
fn id_blocks_increase_across_threads() {
    let handles: Vec<_> = (0..4u64)
        .map(|_| {
            std::thread::spawn(|| {
                let mut ids = Vec::new();
                for round in 0..200u64 {
                    let count = 50 + round % 7;
                    let mut block = IdBlock::reserve(count, unix_ms());
                    for _ in 0..count {
                        ids.push(format_uuid(&block.next_bytes()));
                    }
                    ids.push(format_uuid(&new_bytes()));
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    let mut total = 0;
    for handle in handles {
        let ids = handle.join().expect("thread");
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        for id in &ids {
            assert!(timestamp_ms(id).is_ok());
        }
        total += ids.len();
        all.extend(ids);
    }
    assert_eq!(all.len(), total);
}

#[test]
fn id_block_carries_counter_into_timestamp() {
    let now = unix_ms();
    let mut block = IdBlock::reserve(10_000, now);
    // One id past the reservation comes from `new_bytes` and still sorts last.
    let ids: Vec<String> = (0..10_001)
        .map(|_| format_uuid(&block.next_bytes()))
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    let first = timestamp_ms(&ids[0]).expect("uuid7");
    let last = timestamp_ms(&ids[9_999]).expect("uuid7");
    assert!(first >= now);
    // 10,000 consecutive values of a 4,096-value counter span at least 3 milliseconds.
    assert!(last - first >= 2, "{first} to {last}");
}

#[test]
fn batch_accepts_and_rejects_per_event() {
    let body =
        br#"[{"event_type":"click","params":{"key_prefix":"acme"}},{"event_type":"click"},7]"#;
    let outcome = parse_batch(&config(10), body, &REQUEST).expect("parse");
    assert_eq!(outcome.accepted, 1);
    let fields: Vec<&str> = outcome.rejected.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(fields, ["params", "event"]);
    let (_, count, blob) = &outcome.records[0];
    assert_eq!(*count, 1);
    let batch = decode(blob).expect("decode");
    let event: serde_json::Value =
        serde_json::from_slice(batch.events().next().expect("event")).expect("json");
    assert_eq!(event["event_id"], outcome.event_ids[0].as_str());
    assert_eq!(event["request_path"], "/batch");
}

#[test]
fn batch_body_errors_name_the_field() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: [(&[u8], &str); 5] = [
        (b"{", "body"),
        (b"\xff", "body"),
        (deep.as_bytes(), "body"),
        (br#"{"events":1}"#, "events"),
        (b"[{},{},{}]", "events"),
    ];
    for (body, expected) in cases {
        match parse_batch(&config(2), body, &REQUEST) {
            Err(CoreError::Batch { field, .. }) => assert_eq!(field, expected),
            other => panic!("expected a batch error on {expected}, got {other:?}"),
        }
    }
}
