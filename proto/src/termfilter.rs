//! What of a guest's console output may reach an admin's terminal. Both ends of a console use
//! it: the client (`vserverctl console`) filters what it shows, the console keeper escapes what
//! it logs. A guest is hostile: through its console it could set the terminal's title or
//! clipboard (OSC 52), switch to the alternate screen or line-drawing characters, turn on
//! mouse reporting or hide the cursor — all of which outlive the session — or send queries
//! (device attributes, cursor position, window reports) that make the terminal type answers
//! into the guest as if the admin had.
//!
//! [`Filter`] keeps text, the usual C0 controls (newline, return, tab, backspace, bell) and the
//! escape sequences that only draw: colours and attributes (SGR), cursor movement, erasing,
//! cursor save/restore. It drops every string sequence (OSC, DCS, APC, PM, SOS), private
//! modes and the other mode changes, queries and reports, character-set designations and
//! shifts, the full reset, and the C1 controls in their UTF-8 form (U+0080–U+009F). State
//! carries across chunks, so a sequence split between two reads is still recognised.
//!
//! [`escape_for_log`] makes every control visible instead (`^[` for ESC), so `cat` of a log
//! shows what the guest wrote without obeying it.

/// Written when a console session ends: undoes what a guest might have left set even through
/// the filter (`--raw` sessions) — attributes, scroll region, cursor, alternate screen, mouse
/// reporting, bracketed paste, character sets, keypad mode.
pub const RESET: &[u8] = b"\x1b[0m\x1b[r\x1b[?25h\x1b[?1049l\x1b[?1000l\x1b[?1002l\x1b[?1003l\
\x1b[?1006l\x1b[?2004l\x1b(B\x1b)0\x0f\x1b>";

/// The longest control sequence kept whole; a longer one is dropped.
const MAX_SEQ: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    Csi,
    /// Inside a string sequence (dropped up to BEL or ST).
    Str,
    /// ESC inside a string sequence: `\` ends it.
    StrEsc,
    /// ESC ( and friends: one more byte, dropped.
    Charset,
    /// 0xC2 seen: the next byte may make a C1 control.
    C2,
}

/// The console output filter; one per session.
#[derive(Debug, Clone)]
pub struct Filter {
    state: State,
    seq: Vec<u8>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: State::Ground,
            seq: Vec::with_capacity(MAX_SEQ),
        }
    }
}

/// Whether a complete CSI sequence (ESC [ params intermediates final) only draws.
fn csi_allowed(seq: &[u8]) -> bool {
    let body = &seq[2..];
    let Some((&fin, params)) = body.split_last() else {
        return false;
    };
    // A private marker (< = > ?) or an intermediate byte: private modes, mouse, queries.
    if params.first().is_some_and(|b| b"<=>?".contains(b))
        || params.iter().any(|b| (0x20..0x30).contains(b))
    {
        return false;
    }
    // SGR; cursor up/down/forward/back, next/previous line, column, position; erase in
    // display/line; scroll up/down; line position; insert/delete lines and characters; the
    // scroll region (undone by RESET).
    matches!(
        fin,
        b'm' | b'A'
            | b'B'
            | b'C'
            | b'D'
            | b'E'
            | b'F'
            | b'G'
            | b'H'
            | b'f'
            | b'J'
            | b'K'
            | b'S'
            | b'T'
            | b'd'
            | b'L'
            | b'M'
            | b'P'
            | b'@'
            | b'X'
            | b'r'
    )
}

impl Filter {
    pub fn new() -> Filter {
        Filter::default()
    }

    /// The part of `input` that may reach the terminal.
    pub fn apply(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            self.byte(b, &mut out);
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => match b {
                0x1b => {
                    self.seq.clear();
                    self.seq.push(b);
                    self.state = State::Esc;
                }
                0xc2 => self.state = State::C2,
                b'\n' | b'\r' | b'\t' | 0x08 | 0x07 => out.push(b),
                0x00..=0x1f | 0x7f => {}
                _ => out.push(b),
            },
            State::C2 => {
                self.state = State::Ground;
                match b {
                    // C1 CSI: as ESC [.
                    0x9b => {
                        self.seq.clear();
                        self.seq.extend_from_slice(b"\x1b[");
                        self.state = State::Csi;
                    }
                    // C1 DCS, SOS, OSC, PM, APC: strings.
                    0x90 | 0x98 | 0x9d | 0x9e | 0x9f => self.state = State::Str,
                    0x80..=0x9f => {}
                    _ => {
                        out.push(0xc2);
                        self.byte(b, out);
                    }
                }
            }
            State::Esc => {
                self.state = State::Ground;
                match b {
                    b'[' => {
                        self.seq.push(b);
                        self.state = State::Csi;
                    }
                    b']' | b'P' | b'_' | b'^' | b'X' => self.state = State::Str,
                    b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' => self.state = State::Charset,
                    // Cursor save/restore, index, next line, reverse index.
                    b'7' | b'8' | b'D' | b'E' | b'M' => out.extend_from_slice(&[0x1b, b]),
                    _ => {}
                }
            }
            State::Csi => {
                self.seq.push(b);
                if (0x40..=0x7e).contains(&b) {
                    if csi_allowed(&self.seq) {
                        out.extend_from_slice(&self.seq);
                    }
                    self.state = State::Ground;
                } else if !(0x20..0x40).contains(&b) || self.seq.len() >= MAX_SEQ {
                    // Not a CSI byte (or too long): drop what was gathered.
                    self.state = State::Ground;
                }
            }
            State::Str => match b {
                0x07 => self.state = State::Ground,
                0x1b => self.state = State::StrEsc,
                _ => {}
            },
            State::StrEsc => {
                self.state = if b == b'\\' {
                    State::Ground
                } else {
                    State::Str
                }
            }
            State::Charset => self.state = State::Ground,
        }
    }
}

/// `input` with every control byte but newline, return and tab made visible (`^[` for ESC,
/// `^X` for the others, `<U+009B>` for a UTF-8 C1 control). `pending` carries a 0xC2 split
/// from its next byte across calls.
pub fn escape_for_log(input: &[u8], pending: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 16);
    for &b in input {
        if std::mem::take(pending) {
            if (0x80..=0x9f).contains(&b) {
                out.extend_from_slice(format!("<U+{:04X}>", b).as_bytes());
                continue;
            }
            out.push(0xc2);
        }
        match b {
            0xc2 => *pending = true,
            b'\n' | b'\r' | b'\t' => out.push(b),
            0x00..=0x1f => {
                out.push(b'^');
                out.push(b + 0x40);
            }
            0x7f => out.extend_from_slice(b"^?"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &[u8]) -> Vec<u8> {
        Filter::new().apply(s)
    }

    #[test]
    fn text_colours_and_cursor_movement_pass() {
        assert_eq!(f(b"hello\r\n"), b"hello\r\n");
        assert_eq!(f(b"\x1b[1;31mred\x1b[0m"), b"\x1b[1;31mred\x1b[0m");
        assert_eq!(
            f(b"\x1b[2J\x1b[H\x1b[10;5H\x1b[K"),
            b"\x1b[2J\x1b[H\x1b[10;5H\x1b[K"
        );
        assert_eq!(f("grüße ő".as_bytes()), "grüße ő".as_bytes());
        assert_eq!(f(b"\x1b7x\x1b8"), b"\x1b7x\x1b8");
    }

    #[test]
    fn what_outlives_the_session_or_answers_back_is_dropped() {
        // Title, clipboard (OSC 52), hyperlinks: BEL- and ST-terminated.
        assert_eq!(f(b"a\x1b]0;pwned\x07b"), b"ab");
        assert_eq!(f(b"a\x1b]52;c;ZWNobyBoaQ==\x1b\\b"), b"ab");
        // DCS, APC, PM, SOS.
        assert_eq!(
            f(b"a\x1bP+q544e\x1b\\b\x1b_x\x1b\\\x1b^y\x1b\\\x1bXz\x1b\\"),
            b"ab"
        );
        // Alternate screen, mouse, hidden cursor, bracketed paste: private modes.
        assert_eq!(f(b"\x1b[?1049h\x1b[?1000h\x1b[?25l\x1b[?2004h"), b"");
        // Queries: device attributes, cursor position, window report, DECRQM.
        assert_eq!(f(b"\x1b[c\x1b[>c\x1b[6n\x1b[14t\x1b[?1$p"), b"");
        // Line drawing: designation and shift out; full reset; insert mode.
        assert_eq!(f(b"\x1b(0\x0eqqq\x0f\x1bc\x1b[4h"), b"qqq");
        // C1 controls in UTF-8: CSI and OSC.
        assert_eq!(f("\u{9b}6n\u{9d}0;t\u{07}ok".as_bytes()), b"ok");
    }

    #[test]
    fn a_sequence_split_across_reads_is_still_caught() {
        let mut fl = Filter::new();
        let mut out = fl.apply(b"x\x1b]5");
        out.extend(fl.apply(b"2;c;AAAA\x1b"));
        out.extend(fl.apply(b"\\y\x1b["));
        out.extend(fl.apply(b"?1049hz\xc2"));
        out.extend(fl.apply(b"\x9b6nw"));
        assert_eq!(out, b"xyzw");
    }

    #[test]
    fn logs_show_controls_instead_of_obeying_them() {
        let mut p = false;
        let mut out = escape_for_log(b"a\x1b]0;t\x07b\r\n\xc2", &mut p);
        out.extend(escape_for_log(b"\x9bc", &mut p));
        assert_eq!(out, b"a^[]0;t^Gb\r\n<U+009B>c");
        assert!(!out.contains(&0x1b));
    }
}
