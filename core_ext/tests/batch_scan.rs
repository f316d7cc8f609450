//! The fast `/batch` reader against the serde_json reader it replaces on common bodies.
//!
//! For every body, `scan_events` must either decline (`None`) or return exactly
//! what `read_events` returns, including which strings are borrowed from the
//! body, because a borrowed string is copied into event JSON without escaping.

use std::borrow::Cow;

use _core::batch_json::{read_events, RawEvent, RawOutcome};
use _core::batch_scan::scan_events;

const MAX_EVENTS: usize = 3;

const COMMON: &str = r#"[{"event_type":"click","params":{"key_prefix":"acme","sub":"1"}},
 {"event_type":"view","event_id":"017f22e2-79b0-7cc3-98c4-dc0c0c07398f","ip":"198.51.100.1",
  "user_agent":"ua","referer":"r","accept_language":"en","params":{"key_prefix":"acme"}}]"#;

fn strings_of<'a>(event: &'a RawEvent<'_>) -> Vec<&'a Cow<'a, str>> {
    let mut strings: Vec<&Cow<'_, str>> = [
        &event.event_type,
        &event.event_id,
        &event.ip,
        &event.user_agent,
        &event.referer,
        &event.accept_language,
    ]
    .into_iter()
    .flatten()
    .collect();
    for (key, value) in event.params.iter().flatten() {
        strings.push(key);
        strings.push(value);
    }
    strings
}

/// Lists, for every string read, whether it was borrowed from the body.
fn borrowed_flags(outcomes: &[RawOutcome<'_>]) -> Vec<bool> {
    let mut flags = Vec::new();
    for outcome in outcomes {
        if let RawOutcome::Read(event) = outcome {
            for string in strings_of(event) {
                flags.push(matches!(string, Cow::Borrowed(_)));
            }
        }
    }
    flags
}

/// Checks one body and returns whether the fast reader took it.
fn check_body(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let Some(scanned) = scan_events(text, MAX_EVENTS) else {
        return false;
    };
    let read = read_events(text, MAX_EVENTS)
        .unwrap_or_else(|error| panic!("serde reader rejects {text:?} with {error:?}"));
    assert_eq!(scanned, read, "{text:?}");
    assert_eq!(borrowed_flags(&scanned), borrowed_flags(&read), "{text:?}");
    for outcome in &scanned {
        assert!(matches!(outcome, RawOutcome::Read(_)), "{text:?}");
    }
    true
}

#[test]
fn scan_takes_common_bodies() {
    let bodies = [
        COMMON.to_owned(),
        format!(r#"{{"events":{COMMON}}}"#),
        format!(" \t\r\n{{ \"events\" : {} }} \n", COMMON.replace(',', " , ")),
        "[]".to_owned(),
        r#"{"events":[]}"#.to_owned(),
        "[{}]".to_owned(),
        r#"[{"event_type":"a","params":{}}]"#.to_owned(),
        r#"[{"event_type":"a","params":{"k":"line\nquote\"slash\\\/\b\f\r\t\u00e9\ud83d\ude00\u0000"}}]"#
            .to_owned(),
        r#"[{"event\u005ftype":"a","params":{"key_prefix":"\u0061cme"}}]"#.to_owned(),
        "[{\"event_type\":\"é€😀\",\"params\":{\"é\":\"€\"}}]".to_owned(),
    ];
    for body in bodies {
        assert!(check_body(body.as_bytes()), "fast reader declined {body:?}");
    }
}

#[test]
fn scan_declines_what_it_does_not_handle() {
    let bodies: &[&[u8]] = &[
        b"",
        b"   ",
        b"{}",
        b"[",
        b"[] []",
        b"[],",
        b"[{},]",
        b"[{},{},{},{}]",
        br#"{"events":[],"events":[]}"#,
        br#"{"events":[],"x":1}"#,
        br#"{"events":{}}"#,
        br#"{"other":[]}"#,
        b"[1]",
        b"[null]",
        b"[[]]",
        br#"["event"]"#,
        br#"[{"event_type":1}]"#,
        br#"[{"event_type":null}]"#,
        br#"[{"event_type":"a","event_type":"b"}]"#,
        br#"[{"params":{},"params":{}}]"#,
        br#"[{"params":[]}]"#,
        br#"[{"params":{"k":1}}]"#,
        br#"[{"params":{"k":"1","k":"2"}}]"#,
        br#"[{"params":{"k":"1","\u006b":"2"}}]"#,
        br#"[{"color":"red"}]"#,
        br#"[{"timestamp":"1"}]"#,
        br#"[{"event_type":"a\u"}]"#,
        br#"[{"event_type":"a\u12"}]"#,
        br#"[{"event_type":"a\uzzzz"}]"#,
        br#"[{"event_type":"a\x"}]"#,
        br#"[{"event_type":"\ud83d"}]"#,
        br#"[{"event_type":"\ud83d\u0041"}]"#,
        br#"[{"event_type":"\ude00"}]"#,
        b"[{\"event_type\":\"tab\there\"}]",
        b"[{\"event_type\":\"a\"}",
        b"[{\"event_type\":\"a",
    ];
    for body in bodies {
        let text = std::str::from_utf8(body).expect("test bodies are UTF-8");
        assert!(
            scan_events(text, MAX_EVENTS).is_none(),
            "fast reader took {text:?}"
        );
    }
}

#[test]
fn scan_matches_serde_on_many_params() {
    let keys: Vec<String> = (0..40).map(|i| format!(r#""p{i}":"v""#)).collect();
    let unique = format!(r#"[{{"params":{{{}}}}}]"#, keys.join(","));
    assert!(check_body(unique.as_bytes()));
    let repeated = format!(r#"[{{"params":{{{},"p39":"w"}}}}]"#, keys.join(","));
    assert!(!check_body(repeated.as_bytes()));
}

#[test]
fn scan_matches_serde_on_every_prefix() {
    let body = format!(r#"{{"events":{COMMON}}}"#);
    let mut taken = 0;
    for end in 0..=body.len() {
        if check_body(&body.as_bytes()[..end]) {
            taken += 1;
        }
    }
    // Only the whole body is a complete document.
    assert_eq!(taken, 1);
}

#[test]
fn scan_matches_serde_on_mutated_bodies() {
    let seed = format!(
        r#"{{"events":[{{"event_type":"a\u00e9","params":{{"key_prefix":"acme","k":"v\"w"}}}},{}]}}"#,
        r#"{"ip":"1.2.3.4","params":{"x":"y"}}"#
    );
    let replacements: &[u8] = b"\"\\{}[],: a0u\x01\t\n/ed8";
    let mut taken = 0;
    let mut checked = 0;
    for position in 0..seed.len() {
        for &byte in replacements {
            let mut body = seed.clone().into_bytes();
            body[position] = byte;
            checked += 1;
            if check_body(&body) {
                taken += 1;
            }
            body.insert(position, byte);
            if check_body(&body) {
                taken += 1;
            }
        }
    }
    assert!(checked > 1000);
    // Mutations that keep the body well formed must still reach the fast reader.
    assert!(taken > 100, "fast reader took only {taken} bodies");
}
