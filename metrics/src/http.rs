//! The little HTTP this exporter speaks: one request per connection, GET or HEAD, answered
//! and closed. Anything on the network may connect, so a request head is bounded in size and
//! parsed strictly; everything else is refused with a status code.

/// The most a request head may take (Prometheus sends a few hundred bytes).
pub const MAX_HEAD: usize = 8 * 1024;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// GET or HEAD of /metrics (a query string is ignored): `head` leaves the body out.
    Metrics {
        head: bool,
    },
    /// GET or HEAD of /: a pointer to /metrics.
    Index {
        head: bool,
    },
    NotFound {
        head: bool,
    },
    /// Not GET or HEAD.
    MethodNotAllowed,
    /// Not a request line this server understands.
    Malformed,
}

/// The end of the head (the blank line) in `buf`, if it arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Parses a request head's first line.
pub fn parse(head: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Malformed;
    };
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Request::Malformed;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => Request::Metrics { head },
        "/" => Request::Index { head },
        _ => Request::NotFound { head },
    }
}

/// A whole response: status line, headers, and the body unless `head`.
pub fn response(status: &str, content_type: &str, body: &str, head: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head: false }
        );
        assert_eq!(
            p("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head: true }
        );
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Request::Index { head: false });
        assert_eq!(
            p("GET /etc/passwd HTTP/1.1\r\n\r\n"),
            Request::NotFound { head: false }
        );
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(p("GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET metrics HTTP/1.1\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET /metrics SPDY/3 x\r\n\r\n"), Request::Malformed);
        assert_eq!(
            parse(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            Request::Malformed
        );
    }

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn responses_say_their_length_and_close() {
        let r = String::from_utf8(response("200 OK", "text/plain", "abc", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 3\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\nabc"));
        let h = String::from_utf8(response("200 OK", "text/plain", "abc", true)).unwrap();
        assert!(h.contains("Content-Length: 3\r\n") && h.ends_with("\r\n\r\n"));
    }
}
