//! A refund-policy plugin that misbehaves on purpose. Its config picks the
//! behaviour: `{"behavior": "loop"}` and so on; see `decide` below.

wit_bindgen::generate!({ world: "refund-policy", path: "../../../wit" });

use kefu::workflow::types::{RefundOutcome, ReturnShipping};
use kefu::workflow::{config, log, state};

struct Plugin;

/// Guest memory that outlives a call when the instance is reused.
static REMEMBERED: std::sync::Mutex<(u64, String)> = std::sync::Mutex::new((0, String::new()));

fn reject(message: &str) -> RefundDecision {
    RefundDecision {
        outcome: RefundOutcome::Reject("hostile plugin".into()),
        amount: 0,
        return_required: false,
        return_shipping: ReturnShipping::None,
        message: message.into(),
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    sink[(depth % 64) as usize] = depth;
    let below = recurse(depth + 1, sink);
    std::hint::black_box(below + sink[(depth % 7) as usize])
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn big_frames(depth: u64) -> u64 {
    let mut block = [0u8; 2048];
    block[(depth % 2048) as usize] = depth as u8;
    let below = big_frames(depth + 1);
    std::hint::black_box(&mut block);
    below + u64::from(block[(depth % 13) as usize])
}

impl Guest for Plugin {
    fn decide(req: RefundRequest) -> Result<RefundDecision, String> {
        let cfg: serde_json::Value =
            serde_json::from_str(&config::get()).map_err(|e| e.to_string())?;
        let arg = |name: &str| cfg.get(name).and_then(|v| v.as_u64()).unwrap_or(0);
        match cfg.get("behavior").and_then(|b| b.as_str()).unwrap_or("ok") {
            // Spin forever: the host's timeout must stop it.
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Legal but slow: spin `iterations` times, then answer.
            "spin" => {
                let mut n: u64 = 0;
                for _ in 0..arg("iterations") {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                Ok(reject(&format!("spun {n}")))
            }
            // Allocate until the memory limit stops it.
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            // Allocate `bytes` bytes, touch them, and answer normally.
            "allocate" => {
                let mut block = vec![0u8; arg("bytes") as usize];
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                Ok(reject(&format!(
                    "allocated {}",
                    std::hint::black_box(block).len()
                )))
            }
            "trap" => panic!("hostile plugin panics on purpose"),
            // Trap on `percent` of the orders (by a hash of the order id),
            // answer the others: a version that fails some of its calls.
            "fail-percent" => {
                let hash = req.order.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                if hash % 100 < arg("percent") {
                    panic!("hostile plugin fails this order on purpose");
                }
                Ok(reject("ok"))
            }
            "stack-overflow" => {
                let mut sink = [0u64; 64];
                Ok(reject(&recurse(0, &mut sink).to_string()))
            }
            // Recursion whose frames hold arrays: they live on the shadow
            // stack in linear memory, which runs out before wasm's own.
            "shadow-stack-overflow" => Ok(reject(&big_frames(0).to_string())),
            // A message of `bytes` bytes (10 MB by default).
            "huge-output" => {
                let size = match arg("bytes") {
                    0 => 10 << 20,
                    n => n as usize,
                };
                Ok(reject(&"x".repeat(size)))
            }
            // Approve more than was paid: the host must refuse the output.
            "over-refund" => Ok(RefundDecision {
                outcome: RefundOutcome::Approve,
                amount: req.order.total_paid + 1,
                return_required: false,
                return_shipping: ReturnShipping::None,
                message: String::new(),
            }),
            // Print a lot to stdout and stderr and log a lot.
            "chatty" => {
                for i in 0..arg("lines").max(1) {
                    println!("stdout line {i}");
                    eprintln!("stderr line {i}");
                    log::write(log::Level::Info, &format!("log line {i}"));
                }
                Ok(reject("chatty"))
            }
            // Count calls in state: shows what state a shop's plugin sees.
            "counter" => {
                let n: u64 = state::get("count")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
                    + 1;
                state::set("count", &n.to_string()).map_err(|e| format!("{e:?}"))?;
                Ok(reject(&n.to_string()))
            }
            "error" => Err("hostile plugin refuses to decide".into()),
            // Try everything the sandbox must refuse; report what worked.
            "probe" => {
                let mut got = Vec::new();
                if let Ok(entries) = std::fs::read_dir("/") {
                    got.push(format!("listed / ({} entries)", entries.count()));
                }
                if std::fs::read_to_string("/etc/passwd").is_ok() {
                    got.push("read /etc/passwd".to_string());
                }
                if std::fs::write("/tmp/kefu-escape", "x").is_ok() {
                    got.push("wrote /tmp".to_string());
                }
                let vars = std::env::vars().count();
                if vars > 0 {
                    got.push(format!("{vars} env vars"));
                }
                if std::env::args().count() > 0 {
                    got.push("args".to_string());
                }
                for addr in ["127.0.0.1:80", "127.0.0.1:8080", "10.0.0.1:80"] {
                    if std::net::TcpStream::connect(addr).is_ok() {
                        got.push(format!("connected to {addr}"));
                    }
                }
                if std::net::UdpSocket::bind("127.0.0.1:0").is_ok() {
                    got.push("bound a UDP socket".to_string());
                }
                if std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).is_ok() {
                    got.push("resolved a name".to_string());
                }
                Ok(reject(&if got.is_empty() {
                    "nothing".to_string()
                } else {
                    got.join("; ")
                }))
            }
            // A message that is not UTF-8 (only `unsafe` can make one).
            "bad-utf8" => {
                // SAFETY: deliberately not; the host must refuse to lift it.
                let text = unsafe { String::from_utf8_unchecked(vec![0xe5, 0x96, 0xff, 0xfe]) };
                Ok(reject(&text))
            }
            // Fill the state store: `keys` keys of `bytes` bytes each.
            "fill-state" => {
                let value = "x".repeat(arg("bytes").max(1) as usize);
                for i in 0..arg("keys") {
                    if let Err(e) = state::set(&format!("k{i}"), &value) {
                        return Err(format!("state refused key {i}: {e:?}"));
                    }
                }
                Ok(reject("filled"))
            }
            // Count this plugin's keys with `prefix` page by page.
            "count-keys" => {
                let (mut count, mut pages) = (0, 0);
                let mut page = state::list_keys("k", 1_000_000);
                while !page.is_empty() {
                    pages += 1;
                    count += page.len();
                    let last = page.last().cloned().unwrap_or_default();
                    page = state::list_keys_after("k", &last, 1_000_000);
                }
                Ok(reject(&format!("{count} keys in {pages} pages")))
            }
            // Remember this call's order in guest memory and answer with
            // the count of calls this instance served and the order
            // remembered from the call before: a reused instance shows both.
            "remember" => {
                let mut slot = REMEMBERED.lock().unwrap();
                slot.0 += 1;
                let previous = std::mem::replace(&mut slot.1, req.order.id.clone());
                Ok(reject(&format!("{} {previous}", slot.0)))
            }
            _ => Ok(reject("ok")),
        }
    }
}

export!(Plugin);
