//! The JSON log: one object per event, in the shape of `tracing-subscriber`'s JSON formatter with
//! flattened events (`timestamp`, `level`, the event's fields with `message` first, `target`,
//! and its span's fields and name under `span`), written straight into one buffer per line. A
//! span's fields are serialised once, when it opens or records one; `tracing-subscriber`'s
//! formatter parsed them back and wrote them again for every line, which with the access line
//! of every request was a quarter of the server's instructions on small models.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Writes every event it sees as a JSON line to `writer`.
pub struct JsonLines<W> {
    writer: W,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W) -> Self {
        JsonLines { writer }
    }
}

/// A span's fields, each as `"name":value`, in the order first given; written into each line of
/// the span as it is written (a request span has one line, its access line).
#[derive(Default)]
struct SpanFields {
    fields: Vec<(&'static str, String)>,
}

impl SpanFields {
    fn record(&mut self, name: &'static str, value: String) {
        match self.fields.iter_mut().find(|(known, _)| *known == name) {
            Some((_, known)) => *known = value,
            None => self.fields.push((name, value)),
        }
    }

    /// `{"field":value,...,"name":"span"}` at the end of `line`.
    fn write(&self, line: &mut String, span_name: &str) {
        line.push('{');
        for (name, value) in &self.fields {
            push_json_str(line, name);
            line.push(':');
            line.push_str(value);
            line.push(',');
        }
        line.push_str("\"name\":");
        push_json_str(line, span_name);
        line.push('}');
    }
}

/// Collects fields as JSON values: into `SpanFields`, or an event's `message` and the rest.
struct JsonVisitor<'a> {
    sink: Sink<'a>,
}

enum Sink<'a> {
    Span(&'a mut SpanFields),
    Event {
        message: &'a mut String,
        rest: &'a mut String,
    },
}

impl JsonVisitor<'_> {
    /// `field`'s JSON value, which `write` appends to the string it is given.
    fn value(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        match &mut self.sink {
            Sink::Span(fields) => {
                let mut value = String::with_capacity(40);
                write(&mut value);
                fields.record(field.name(), value);
            }
            Sink::Event { message, rest } => {
                if field.name() == "message" {
                    message.clear();
                    write(message);
                } else {
                    rest.push(',');
                    push_json_str(rest, field.name());
                    rest.push(':');
                    write(rest);
                }
            }
        }
    }

    fn string(&mut self, field: &Field, text: &str) {
        self.value(field, |out| push_json_str(out, text));
    }

    /// A value as its `Display` or `Debug` writes it, escaped on the way.
    fn formatted(&mut self, field: &Field, text: std::fmt::Arguments<'_>) {
        self.value(field, |out| {
            out.push('"');
            let _ = Escaping(out).write_fmt(text);
            out.push('"');
        });
    }

    fn number(&mut self, field: &Field, number: impl serde::Serialize) {
        // Numbers (and a float that is not one, as null) as serde_json writes them.
        let value = serde_json::to_string(&number).unwrap_or_else(|_| "null".to_string());
        self.value(field, |out| out.push_str(&value));
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, |out| {
            let _ = write!(out, "{value}");
        });
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.number(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.number(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, |out| {
            out.push_str(if value { "true" } else { "false" })
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.formatted(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.formatted(field, format_args!("{value:?}"));
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let mut fields = SpanFields::default();
        attributes.record(&mut JsonVisitor {
            sink: Sink::Span(&mut fields),
        });
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor {
                sink: Sink::Span(fields),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        // One buffer for the line, large enough for an access line: the event's fields are
        // written into it as they are visited, and its message, visited among them, moved in
        // before them.
        let metadata = event.metadata();
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(metadata.level().as_str());
        line.push('"');
        let fields_start = line.len();
        let mut message = String::new();
        event.record(&mut JsonVisitor {
            sink: Sink::Event {
                message: &mut message,
                rest: &mut line,
            },
        });
        if !message.is_empty() {
            message.insert_str(0, ",\"message\":");
            line.insert_str(fields_start, &message);
        }
        line.push_str(",\"target\":");
        push_json_str(&mut line, metadata.target());
        if let Some(span) = context.event_span(event) {
            if let Some(fields) = span.extensions().get::<SpanFields>() {
                line.push_str(",\"span\":");
                fields.write(&mut line, span.name());
            }
        }
        line.push_str("}\n");
        // One write per line, so that lines of different threads never interleave; a log that
        // cannot be written has nowhere to say so.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// `text` as a JSON string, quoted and escaped.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// `text` escaped for a JSON string. The runs between the bytes to escape are copied whole (one
/// access line holds a few hundred bytes of them), found eight bytes at a time; those bytes are
/// all ASCII, so every run ends on a character boundary.
fn push_escaped(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let (mut copied, mut at) = (0, 0);
    while at < bytes.len() {
        let word = bytes
            .get(at..at + 8)
            .and_then(|eight| <[u8; 8]>::try_from(eight).ok());
        if word.is_some_and(|word| !any_to_escape(u64::from_le_bytes(word))) {
            at += 8;
            continue;
        }
        let byte = bytes[at];
        at += 1;
        // Some short escape, or None for the other control bytes' \u form.
        let short = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[copied..at - 1]);
        match short {
            Some(escape) => out.push_str(escape),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        copied = at;
    }
    out.push_str(&text[copied..]);
}

/// Whether any of the eight bytes of `word` is one to escape: a control byte, a quote or a
/// backslash (the "has a byte less than n" and "has a zero byte" tricks of Bit Twiddling Hacks;
/// bytes of 0x80 and above, UTF-8's, are none of them).
fn any_to_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS != 0;
    let has_control_byte = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS != 0;
    has_control_byte
        || has_zero_byte(word ^ (ONES * u64::from(b'"')))
        || has_zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// Escapes what is formatted into it, as it comes, into its string.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

/// `time` in UTC as RFC 3339 with microseconds, `2026-12-02T05:45:15.393717Z`, as
/// `tracing-subscriber` writes it (and the prediction log, through [`super::utc_timestamp`]).
pub(super) fn push_timestamp(out: &mut String, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    // Digit by digit: `write!` with its formatting machinery took a tenth of each line.
    let fields: [(u64, usize, char); 7] = [
        (year.max(0) as u64, 4, '-'),
        (u64::from(month), 2, '-'),
        (u64::from(day), 2, 'T'),
        (of_day / 3600, 2, ':'),
        (of_day / 60 % 60, 2, ':'),
        (of_day % 60, 2, '.'),
        (u64::from(since_epoch.subsec_micros()), 6, 'Z'),
    ];
    let mut digits = [b'0'; 6];
    for (mut value, width, after) in fields {
        let field = &mut digits[..width];
        for slot in field.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
        out.extend(field.iter().map(|&digit| char::from(digit)));
        out.push(after);
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}")))
                .collect()
        }
    }

    /// What the server logs: events outside and inside a request span, fields given when the
    /// span opens, recorded later and never, text that needs escaping, every kind of value.
    fn log_what_the_server_logs() {
        tracing::info!(library = "/lib/libonnxruntime.so", "ONNX Runtime loaded");
        let span = tracing::info_span!(
            "request",
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            method = %"POST",
            endpoint = %"/v2/models/{model}/infer",
        );
        span.record("request_id", "caller \"quoted\"\n\\ id");
        span.in_scope(|| {
            tracing::info!(
                model = %"iris-svc",
                status = "200",
                duration_ms = 0.125,
                rows = 3u64,
                offset = -2i64,
                cached = true,
                "request"
            );
            tracing::warn!(error = %std::io::Error::other("broken\tpipe"), "cannot write");
        });
        tracing::error!(detail = ?vec![1, 2], "a debug value");
    }

    /// The lines hold the same JSON as `tracing-subscriber`'s formatter gives for the same
    /// events, configured as the server had it, but for the timestamp.
    #[test]
    fn the_lines_are_those_of_tracing_subscribers_json_formatter() {
        let ours = Captured::default();
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(JsonLines::new(ours.clone())),
            log_what_the_server_logs,
        );
        let theirs = Captured::default();
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_span_list(false)
                    .with_writer(theirs.clone()),
            ),
            log_what_the_server_logs,
        );
        let (mut ours, mut theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 4);
        for line in ours.iter_mut().chain(theirs.iter_mut()) {
            let timestamp = line["timestamp"].as_str().unwrap().to_string();
            assert_eq!(
                timestamp.len(),
                "2026-12-02T05:45:15.393717Z".len(),
                "{timestamp}"
            );
            line["timestamp"] = serde_json::Value::Null;
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours[1]["span"]["request_id"], "caller \"quoted\"\n\\ id");
    }

    /// Strings are escaped as serde_json escapes them, whatever surrounds the bytes to escape.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain /predict",
            "\"",
            "ends with a quote\"",
            "\\ at the start, é ü 雪 and 🦀 between \"quotes\"",
            "\n\r\t\u{0}\u{1f}\u{7f} controls",
            "é\u{1}é",
            "eight by\"eight by\\ 01234567\u{1f}0123456 and the rest\u{7f}é\"",
        ] {
            let mut ours = String::new();
            push_json_str(&mut ours, text);
            assert_eq!(ours, serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn eight_bytes_at_a_time_find_every_byte_to_escape_and_no_other() {
        for byte in 0..=u8::MAX {
            let to_escape = byte < 0x20 || byte == b'"' || byte == b'\\';
            for place in 0..8 {
                let mut word = *b"plain 8b";
                word[place] = byte;
                assert_eq!(
                    any_to_escape(u64::from_le_bytes(word)),
                    to_escape,
                    "{byte:#x} at {place}"
                );
            }
        }
    }

    #[test]
    fn timestamps_are_utc_rfc_3339_with_microseconds() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        let now = crate::logging::utc_timestamp(SystemTime::now());
        assert_eq!(now.len(), "2026-12-02T01:02:03.123456Z".len(), "{now}");
        for (seconds, micros, expected) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_796_190_315, 393_717, "2026-12-02T05:45:15.393717Z"),
            (4_107_542_399, 999_999, "2100-02-28T23:59:59.999999Z"),
        ] {
            let mut out = String::new();
            push_timestamp(
                &mut out,
                UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros),
            );
            assert_eq!(out, expected);
        }
    }
}
