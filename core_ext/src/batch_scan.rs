//! Fast reader of `/batch` bodies in their common shape, a single pass over the bytes.
//!
//! It reads the events that `batch_json::read_events` would read, for bodies in
//! which every event is an object of known fields with string values, `params`
//! is an object of strings, and no key is given twice. Any other input (a syntax
//! error, another type of value, an unknown or repeated key, too many events)
//! returns `None` before anything is stamped. The caller then reads the body
//! again with `read_events`, which words the rejection or the error. Like
//! serde_json, it borrows a string from the body when it has no escapes, so
//! `Cow::Borrowed` means the same in both readers.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::batch_json::{is_repeated_key, Params, RawEvent, RawOutcome};
use crate::event::escape_mask;

/// The body is outside the shape this reader handles.
struct Unsupported;

type Scan<T> = Result<T, Unsupported>;

struct Scanner<'de> {
    text: &'de str,
    bytes: &'de [u8],
    position: usize,
}

/// Reads a body of the common shape into raw events, or returns `None` for any
/// other body. `text` must be the whole body, already checked as UTF-8.
pub fn scan_events(text: &str, max_events: usize) -> Option<Vec<RawOutcome<'_>>> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        position: 0,
    };
    let events = scanner.body(max_events).ok()?;
    scanner.skip_whitespace();
    if scanner.position != scanner.bytes.len() {
        return None;
    }
    Some(events)
}

impl<'de> Scanner<'de> {
    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.position) {
            self.position += 1;
        }
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    #[inline(always)]
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        if self.bytes.get(self.position) == Some(&byte) {
            self.position += 1;
            return true;
        }
        false
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// Reads `[...]` or `{"events": [...]}`.
    fn body(&mut self, max_events: usize) -> Scan<Vec<RawOutcome<'de>>> {
        if !self.eat(b'{') {
            return self.events(max_events);
        }
        if self.string()? != "events" {
            return Err(Unsupported);
        }
        self.expect(b':')?;
        let events = self.events(max_events)?;
        self.expect(b'}')?;
        Ok(events)
    }

    fn events(&mut self, max_events: usize) -> Scan<Vec<RawOutcome<'de>>> {
        self.expect(b'[')?;
        // A guess that fits typical events of a few hundred bytes; the vector
        // grows past it as usual.
        let estimate = (self.bytes.len() / 256).min(max_events);
        let mut events = Vec::with_capacity(estimate);
        if self.eat(b']') {
            return Ok(events);
        }
        loop {
            if events.len() == max_events {
                return Err(Unsupported);
            }
            events.push(RawOutcome::Read(self.event()?));
            if self.eat(b',') {
                continue;
            }
            self.expect(b']')?;
            return Ok(events);
        }
    }

    fn event(&mut self) -> Scan<RawEvent<'de>> {
        self.expect(b'{')?;
        let mut event = RawEvent::default();
        if self.eat(b'}') {
            return Ok(event);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            if key == "params" {
                if event.params.is_some() {
                    return Err(Unsupported);
                }
                event.params = Some(self.params()?);
            } else {
                let slot = match key.as_ref() {
                    "event_type" => &mut event.event_type,
                    "event_id" => &mut event.event_id,
                    "ip" => &mut event.ip,
                    "user_agent" => &mut event.user_agent,
                    "referer" => &mut event.referer,
                    "accept_language" => &mut event.accept_language,
                    _ => return Err(Unsupported),
                };
                if slot.is_some() {
                    return Err(Unsupported);
                }
                *slot = Some(self.string()?);
            }
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}')?;
            return Ok(event);
        }
    }

    fn params(&mut self) -> Scan<Params<'de>> {
        self.expect(b'{')?;
        let mut params: Params<'de> = Vec::with_capacity(8);
        if self.eat(b'}') {
            return Ok(params);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.string()?;
            params.push((key, value));
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}')?;
            break;
        }
        // Checked once the object is read, because any repeat sends the body to
        // `read_events` and which key repeats first does not matter here.
        let mut seen = HashSet::new();
        for (index, (key, _)) in params.iter().enumerate() {
            if is_repeated_key(&params[..index], &mut seen, key) {
                return Err(Unsupported);
            }
        }
        Ok(params)
    }

    /// Reads a JSON string, borrowing it from the body when it has no escapes.
    #[inline(always)]
    fn string(&mut self) -> Scan<Cow<'de, str>> {
        self.expect(b'"')?;
        let start = self.position;
        let special = self.find_special(start);
        match self.bytes.get(special) {
            Some(b'"') => {
                self.position = special + 1;
                // Both ends sit next to ASCII bytes, so they are character boundaries.
                let text = self.text.get(start..special).ok_or(Unsupported)?;
                Ok(Cow::Borrowed(text))
            }
            Some(b'\\') => self.escaped_string(start, special),
            // A control character, which JSON does not allow unescaped, or the end.
            _ => Err(Unsupported),
        }
    }

    /// Decodes a string from `start`, whose first backslash is at `special`.
    fn escaped_string(&mut self, start: usize, mut special: usize) -> Scan<Cow<'de, str>> {
        let mut decoded = String::with_capacity(special - start + 16);
        let mut chunk_start = start;
        loop {
            decoded.push_str(self.text.get(chunk_start..special).ok_or(Unsupported)?);
            match self.bytes.get(special) {
                Some(b'"') => {
                    self.position = special + 1;
                    return Ok(Cow::Owned(decoded));
                }
                Some(b'\\') => {
                    chunk_start = self.unescape(special + 1, &mut decoded)?;
                    special = self.find_special(chunk_start);
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// Decodes the escape whose first byte after the backslash is at `position`,
    /// and returns the position after it. A lone surrogate is left to serde_json,
    /// which rejects it.
    fn unescape(&self, position: usize, decoded: &mut String) -> Scan<usize> {
        let simple = match self.bytes.get(position) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unescape_unicode(position + 1, decoded),
            _ => return Err(Unsupported),
        };
        decoded.push(simple);
        Ok(position + 1)
    }

    /// Decodes `XXXX` or a surrogate pair `XXXX\uXXXX` starting at `position`.
    fn unescape_unicode(&self, position: usize, decoded: &mut String) -> Scan<usize> {
        let first = self.hex4(position)?;
        let (code, end) = if (0xd800..0xdc00).contains(&first) {
            if self.bytes.get(position + 4..position + 6) != Some(&b"\\u"[..]) {
                return Err(Unsupported);
            }
            let second = self.hex4(position + 6)?;
            if !(0xdc00..0xe000).contains(&second) {
                return Err(Unsupported);
            }
            let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
            (code, position + 10)
        } else {
            (first, position + 4)
        };
        // `from_u32` rejects a lone low surrogate.
        decoded.push(char::from_u32(code).ok_or(Unsupported)?);
        Ok(end)
    }

    fn hex4(&self, position: usize) -> Scan<u32> {
        let digits = self.bytes.get(position..position + 4).ok_or(Unsupported)?;
        let mut value = 0;
        for &digit in digits {
            value = (value << 4) | char::from(digit).to_digit(16).ok_or(Unsupported)?;
        }
        Ok(value)
    }

    /// Returns the position of the first quote, backslash or control character at
    /// or after `from`, or the body length when there is none.
    #[inline(always)]
    fn find_special(&self, from: usize) -> usize {
        let mut index = from;
        while let Some(chunk) = self.bytes.get(index..index + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let mask = escape_mask(u64::from_le_bytes(word));
            if mask != 0 {
                return index + (mask.trailing_zeros() / 8) as usize;
            }
            index += 8;
        }
        while let Some(&byte) = self.bytes.get(index) {
            if byte == b'"' || byte == b'\\' || byte < 0x20 {
                return index;
            }
            index += 1;
        }
        self.bytes.len()
    }
}
