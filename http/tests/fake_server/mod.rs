//! A fake HTTP/1.1 server on `127.0.0.1:0`, for the transport's tests.
//!
//! Fault model: none beyond what a test asks for. It serves one connection at a time on
//! one thread, reads one request per connection (headers and a `Content-Length` body),
//! records it, and either writes the reply its handler returns and closes the
//! connection, or (`Reply::Silent`) never answers and waits for the client to hang up.
//! Every wait is bounded, so a broken test fails instead of hanging: accepting gives up
//! after about `ACCEPT_POLLS_MAX` milliseconds, and a read after `READ_TIMEOUT`.

// Each test file compiles its own copy and uses only part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Polls of the listener, 1 ms apart, before the server gives up waiting for a client.
const ACCEPT_POLLS_MAX: u32 = 10_000;
/// The longest a read of a request (or a silent wait for the hang-up) blocks.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One request as the server read it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `POST /graphql HTTP/1.1`.
    pub request_line: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

/// What the server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Answer {
        status: u16,
        /// Extra header lines, `Name: value`.
        headers: Vec<String>,
        body: Vec<u8>,
    },
    /// Never answer; wait for the client to hang up.
    Silent,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: &str) -> Reply {
        Reply::Answer {
            status,
            headers: vec![format!("Content-Type: {content_type}")],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::new(status, "application/json", &body.to_string())
    }
}

pub struct FakeServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Recorded>>,
}

impl FakeServer {
    /// A server that answers every request with `handler`'s reply.
    pub fn start(mut handler: impl FnMut(&Recorded) -> Reply + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the bound address");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_seen = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut recorded = Vec::new();
            let mut polls = 0;
            while !stop_seen.load(Ordering::SeqCst) && polls < ACCEPT_POLLS_MAX {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(request) = serve(stream, &mut handler) {
                            recorded.push(request);
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        polls += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(error) => panic!("accept: {error}"),
                }
            }
            recorded
        });
        FakeServer {
            address,
            stop,
            thread,
        }
    }

    /// A server that answers every request with one canned response.
    pub fn answering(reply: Reply) -> FakeServer {
        FakeServer::start(move |_| reply.clone())
    }

    /// A server that reads requests and never answers them.
    pub fn silent() -> FakeServer {
        FakeServer::answering(Reply::Silent)
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.address)
    }

    /// Stops the server; returns every request it read.
    pub fn stop(self) -> Vec<Recorded> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the fake server's thread")
    }

    /// Stops the server; returns the one request it read.
    pub fn only_request(self) -> Recorded {
        let mut recorded = self.stop();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        recorded.pop().expect("one request")
    }
}

/// Reads one request from `stream` and replies; `None` if the client sent no request.
fn serve(mut stream: TcpStream, handler: &mut impl FnMut(&Recorded) -> Reply) -> Option<Recorded> {
    stream.set_nonblocking(false).expect("a blocking stream");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("a read timeout");
    let request = read_request(&mut stream)?;
    match handler(&request) {
        Reply::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} Canned\r\n");
            for header in headers {
                head.push_str(&header);
                head.push_str("\r\n");
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            // The client may have given up already; that is its test's business.
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
        Reply::Silent => {
            // Wait for the hang-up (a read of 0 bytes or an error), bounded by the
            // read timeout.
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    }
    Some(request)
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).expect("an ASCII request head");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().expect("a request line").to_owned();
    let headers: BTreeMap<String, String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let content_length: usize = headers
        .get("content-length")
        .unwrap_or_else(|| panic!("a request without Content-Length: {headers:?}"))
        .parse()
        .expect("a numeric Content-Length");
    let mut body = bytes[head_end + 4..].to_vec();
    while body.len() < content_length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => panic!("the request body ended early"),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    assert_eq!(body.len(), content_length, "one request per connection");
    Some(Recorded {
        request_line,
        headers,
        body,
    })
}
