//! Reading a stage's reports: two channels of JSON lines, parsed here without any I/O.
//!
//! The *trusted* channel (fd 4) is written only by processes that run vserverd's code in the
//! host's pid namespace (the stage, and the helper a join makes): the only place a pid comes
//! from. A guest's process closes its copy as its first act after the clone that made it.
//!
//! The *guest* channel (fd 5) is held by processes a guest can reach (its PID 1 before exec,
//! the reaper until its start command returned, a joined process until execve): whatever
//! arrives there is untrusted data. Only an error text (cleaned of control characters and
//! bounded) and a wait status are taken from it; a pid on it is ignored, and the daemon reads
//! at most [`GUEST_BYTES`] bytes of it, for a bounded time.

use super::plan::Report;

/// The most the daemon reads from a guest channel: errors and step marks are short.
pub const GUEST_BYTES: usize = 64 * 1024;
/// The longest error text taken from a guest channel.
const GUEST_ERROR_CHARS: usize = 1000;

/// Splits a byte stream into lines, keeping at most `cap` bytes in all.
#[derive(Debug)]
pub struct Lines {
    buf: Vec<u8>,
    seen: usize,
    cap: usize,
}

impl Lines {
    pub fn new(cap: usize) -> Lines {
        Lines {
            buf: Vec::new(),
            seen: 0,
            cap,
        }
    }

    /// Adds bytes; returns the complete lines they finished. Once more than `cap` bytes came,
    /// nothing more is kept ([`Lines::overflowed`]).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.seen = self.seen.saturating_add(data.len());
        if self.overflowed() {
            self.buf.clear();
            return Vec::new();
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let rest = self.buf.split_off(i + 1);
            let mut line = std::mem::replace(&mut self.buf, rest);
            line.pop();
            out.push(line);
        }
        out
    }

    pub fn overflowed(&self) -> bool {
        self.seen > self.cap
    }
}

/// What the daemon takes from one line of the guest channel.
pub fn from_guest(line: &[u8]) -> Option<Report> {
    match serde_json::from_slice::<Report>(line).ok()? {
        Report::Error(e) => Some(Report::Error(clean_error(e))),
        Report::Returned(s) => Some(Report::Returned(s)),
        Report::Mark(step, at) => Some(Report::Mark(clean(&step), at)),
        // A pid from inside a guest is never acted on.
        Report::Pid(_) | Report::Helper(_) => None,
    }
}

/// A guest's error report, every text in it cleaned and bounded; the step keeps only the
/// characters a step name has (a guest cannot pose as another step's message), the errno is
/// any number (it is only ever printed).
fn clean_error(e: crate::error::StepError) -> crate::error::StepError {
    let step: String = e
        .step
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    crate::error::StepError {
        step,
        what: e.what.as_deref().map(clean),
        path: e
            .path
            .map(|p| std::path::PathBuf::from(clean(&p.to_string_lossy()))),
        errno: e.errno,
        cause: clean(&e.cause),
    }
}

/// `s` without control characters (a guest's text reaches the admin's terminal and logs),
/// at most GUEST_ERROR_CHARS long.
pub fn clean(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(GUEST_ERROR_CHARS)
        .collect();
    if s.chars().count() > GUEST_ERROR_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_pushes() {
        let mut l = Lines::new(1024);
        assert!(l.push(b"{\"Pi").is_empty());
        assert_eq!(
            l.push(b"d\":1}\n{\"Pid\":2}\n{"),
            vec![b"{\"Pid\":1}".to_vec(), b"{\"Pid\":2}".to_vec()]
        );
        assert_eq!(l.push(b"}\n"), vec![b"{}".to_vec()]);
    }

    #[test]
    fn a_flood_is_cut_off() {
        let mut l = Lines::new(10);
        assert_eq!(l.push(b"12345\n"), vec![b"12345".to_vec()]);
        assert!(l.push(b"67890\n").is_empty());
        assert!(l.overflowed());
        assert!(l.push(b"x\n").is_empty());
    }

    #[test]
    fn a_guest_cannot_report_a_pid() {
        assert_eq!(from_guest(br#"{"Pid":1}"#), None);
        assert_eq!(from_guest(br#"{"Helper":1}"#), None);
        assert_eq!(from_guest(b"garbage"), None);
        assert_eq!(
            from_guest(br#"{"Returned":256}"#),
            Some(Report::Returned(256))
        );
    }

    #[test]
    fn guest_errors_lose_control_characters_and_length() {
        let Some(Report::Error(e)) = from_guest(
            br#"{"Error":{"step":"stage.exec\u001b[2J","what":"x\u0007","path":null,"errno":2,"cause":"bad\u001b]52;c;eA==\u0007 thing"}}"#,
        ) else {
            panic!("not an error")
        };
        assert_eq!(e.cause, "bad ]52;c;eA==  thing");
        assert_eq!(e.step, "stage.exec2J");
        assert_eq!(e.what.as_deref(), Some("x "));
        assert_eq!(e.errno, Some(2));
        let long = format!(
            r#"{{"Error":{{"step":"s","what":null,"path":null,"errno":null,"cause":"{}"}}}}"#,
            "x".repeat(5000)
        );
        let Some(Report::Error(e)) = from_guest(long.as_bytes()) else {
            panic!("not an error")
        };
        assert_eq!(e.cause.chars().count(), GUEST_ERROR_CHARS + 1);
    }
}
