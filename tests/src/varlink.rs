//! Raw varlink over a Unix socket: for tests that send what no well-behaved client would.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub struct Raw {
    pub sock: UnixStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(path: &Path) -> Self {
        let sock = UnixStream::connect(path).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self {
            sock,
            buf: Vec::new(),
        }
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.sock.write_all(b).expect("write");
    }

    /// Writes what the daemon takes of `b`: a write that the daemon ends by closing the
    /// connection is not an error here.
    pub fn try_send_bytes(&mut self, b: &[u8]) {
        let _ = self.sock.set_write_timeout(Some(Duration::from_secs(10)));
        let _ = self.sock.write_all(b);
    }

    pub fn send(&mut self, v: &Value) {
        let mut b = serde_json::to_vec(v).expect("json");
        b.push(0);
        self.send_bytes(&b);
    }

    /// The next message, or None when the daemon closed the connection.
    pub fn recv(&mut self) -> Option<Value> {
        self.recv_bytes()
            .map(|m| serde_json::from_slice(&m).expect("reply is JSON"))
    }

    /// The next message as it came (without its NUL), or None when the daemon closed the
    /// connection.
    pub fn recv_bytes(&mut self) -> Option<Vec<u8>> {
        let mut from = 0;
        loop {
            if let Some(pos) = memchr::memchr(0, &self.buf[from..]) {
                let rest = self.buf.split_off(from + pos + 1);
                let mut msg = std::mem::replace(&mut self.buf, rest);
                msg.pop();
                return Some(msg);
            }
            from = self.buf.len();
            // Read straight into the buffer, growing it geometrically: a benchmark's client
            // should not add copies of its own to a big reply.
            self.buf.resize(from + from.max(65536), 0);
            let r = self.sock.read(&mut self.buf[from..]);
            self.buf.truncate(from + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(&serde_json::json!({"method": method, "parameters": params}));
        self.recv().expect("a reply")
    }
}
