//! The tests' webhook receivers: one HTTP request read off a connection,
//! and a receiver that counts deliveries per idempotency key.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as a receiver saw it: header names lower-cased.
pub struct Request {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Read one request from `stream`; `None` when it was cut short (a sender
/// killed mid-request: its headers never ended, or its body is short).
pub fn read(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut headers = HashMap::new();
    let mut ended = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line == "\r\n" {
            ended = true;
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if !ended || reader.read_exact(&mut body).is_err() {
        return None;
    }
    Some(Request { headers, body })
}

/// A webhook receiver on 127.0.0.1: counts deliveries per idempotency key
/// and remembers when each key first arrived and the revisit's due time.
/// Per idempotency key: (deliveries, first arrival in unix seconds, due_at).
pub type Seen = HashMap<String, (u32, f64, i64)>;

#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    pub fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let seen = receiver.seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // A sender killed mid-request leaves a cut request: not a
                // delivery (it got no answer and will send it again).
                let Some(request) = read(&stream) else {
                    continue;
                };
                let Some(key) = request.header("idempotency-key").map(str::to_string) else {
                    continue;
                };
                let body = request.body;
                let due = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["revisit"]["due_at"].as_i64())
                    .unwrap_or(0);
                let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(key).or_insert((0, now, due));
                entry.0 += 1;
                drop(seen);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        (receiver, url)
    }

    pub fn distinct(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}
