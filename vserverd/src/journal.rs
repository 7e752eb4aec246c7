//! Logging to the systemd journal with structured fields (docs/operations.md, "Logs").
//!
//! When systemd runs the daemon, every log line goes to journald's native socket as one entry:
//! MESSAGE, PRIORITY, and each tracing field as a journal field of its own (`guest` → GUEST,
//! `caller_uid` → CALLER_UID), so `journalctl -u vserverd GUEST=web` finds one guest's lines.
//! Fields of the spans an event is in come along (a start's span carries GUEST, CONTEXT and the
//! STEP it is at); the innermost value of a field wins, and a field recorded again replaces
//! its value (the step moves on), so each entry has each field once. Empty values are left
//! out. Everything else (building the entry) is pure and unit-tested; sending is one datagram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// journald's socket for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// A value longer than this is cut, should a whole entry be too large for one datagram.
const CUT: usize = 4096;

/// Whether stderr is the journal stream systemd gave us: JOURNAL_STREAM names its device and
/// inode (systemd.exec(5)); a unit that sends stderr elsewhere, or a child that inherited the
/// variable but not the stream, does not count.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    rustix::fs::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// The journal field name for a tracing field: upper case, `_` for anything but letters and
/// digits, no leading `_` or digit (those are journald's own), at most 64 characters.
pub fn field_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches(|c: char| c == '_' || c.is_ascii_digit());
    s.chars().take(64).collect()
}

/// journald's priority for a level (syslog's numbers: 3 err … 7 debug).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Appends one field in the native protocol: `NAME=value\n`, or, for a value with a newline,
/// `NAME\n`, its length as 64-bit little endian, the value, `\n`.
fn put(buf: &mut Vec<u8>, name: &str, value: &str, cut: usize) {
    let mut end = value.len().min(cut);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = &value[..end];
    if value.contains('\n') {
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    } else {
        buf.extend_from_slice(name.as_bytes());
        buf.push(b'=');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'\n');
    }
}

/// One entry: the standard fields, then the others by name, each once.
pub fn entry(
    ident: &str,
    level: &Level,
    target: &str,
    message: &str,
    fields: &BTreeMap<String, String>,
    cut: usize,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    put(&mut buf, "MESSAGE", message, cut);
    put(&mut buf, "PRIORITY", &priority(level).to_string(), cut);
    put(&mut buf, "SYSLOG_IDENTIFIER", ident, cut);
    put(&mut buf, "TARGET", target, cut);
    for (k, v) in fields {
        let name = field_name(k);
        let reserved = matches!(
            name.as_str(),
            "" | "MESSAGE" | "PRIORITY" | "SYSLOG_IDENTIFIER" | "TARGET"
        );
        if !reserved && !v.is_empty() {
            put(&mut buf, &name, v, cut);
        }
    }
    buf
}

/// A span's or an event's fields, by tracing name.
#[derive(Default, Clone)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().to_string(), s);
    }
}

/// The layer: entries to journald's socket.
pub struct Layer {
    sock: UnixDatagram,
    ident: String,
}

impl Layer {
    /// Fails when journald's socket cannot be reached (the caller logs as text instead).
    pub fn new(ident: &str) -> std::io::Result<Layer> {
        Self::to(Path::new(SOCKET), ident)
    }

    /// A layer sending to `path` (tests use a socket of their own).
    pub fn to(path: &Path, ident: &str) -> std::io::Result<Layer> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(path)?;
        Ok(Layer {
            sock,
            ident: ident.to_string(),
        })
    }
}

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<Fields>() {
                Some(f) => values.record(f),
                None => {
                    let mut f = Fields::default();
                    values.record(&mut f);
                    ext.insert(f);
                }
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    fields.extend(f.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        fields.extend(own.0);
        let message = fields.remove("message").unwrap_or_default();
        let meta = event.metadata();
        let e = entry(
            &self.ident,
            meta.level(),
            meta.target(),
            &message,
            &fields,
            usize::MAX,
        );
        if self.sock.send(&e).is_err() {
            // Too large for one datagram (EMSGSIZE): the same entry with long values cut.
            let e = entry(
                &self.ident,
                meta.level(),
                meta.target(),
                &message,
                &fields,
                CUT,
            );
            let _ = self.sock.send(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn field_names_are_journal_names() {
        assert_eq!(field_name("guest"), "GUEST");
        assert_eq!(field_name("caller_uid"), "CALLER_UID");
        assert_eq!(field_name("_private"), "PRIVATE");
        assert_eq!(field_name("9lives.x"), "LIVES_X");
        assert_eq!(field_name(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn entries_encode_newlines_and_skip_empty_and_reserved_fields() {
        let mut f = BTreeMap::new();
        f.insert("guest".to_string(), "web".to_string());
        f.insert("mark".to_string(), String::new());
        f.insert("priority".to_string(), "0".to_string());
        f.insert("detail".to_string(), "a\nb".to_string());
        let e = entry("vserverd", &Level::WARN, "t", "hello", &f, usize::MAX);
        let mut want =
            b"MESSAGE=hello\nPRIORITY=4\nSYSLOG_IDENTIFIER=vserverd\nTARGET=t\n".to_vec();
        want.extend_from_slice(b"DETAIL\n");
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\nGUEST=web\n");
        assert_eq!(e, want);
        // Cut at a character boundary.
        let long = "é".repeat(10);
        let e = entry("x", &Level::INFO, "t", &long, &BTreeMap::new(), 5);
        assert!(e.starts_with("MESSAGE=éé\n".as_bytes()));
    }

    /// Span fields reach the event once each, the innermost and latest value winning.
    #[test]
    fn span_fields_flow_into_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let rx = UnixDatagram::bind(&path).unwrap();
        let layer = Layer::to(&path, "vserverd").unwrap();
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!(
                "start",
                guest = "web",
                context = tracing::field::Empty,
                step = tracing::field::Empty
            );
            let _e = span.enter();
            span.record("context", 40001);
            span.record("step", "mount");
            span.record("step", "cgroup");
            tracing::warn!(guest = "web", "start failed: {}", "no");
        });
        let mut buf = vec![0u8; 4096];
        let n = rx.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "MESSAGE=start failed: no",
            "PRIORITY=4",
            "GUEST=web",
            "CONTEXT=40001",
            "STEP=cgroup",
        ] {
            assert_eq!(lines.iter().filter(|l| **l == want).count(), 1, "{text}");
        }
        assert!(!text.contains("STEP=mount"), "{text}");
    }
}
