//! Start the real `kefu serve` on 127.0.0.1 (a free port) and talk to it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const TEA_KEY: &str = "test-key-tea-oil";
pub const APPAREL_KEY: &str = "test-key-apparel";
pub const ADMIN: &str = "test-admin-token";
/// What `KEFU_WEBHOOK_SECRET_LAB` holds in servers under test.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// A running server; killed (SIGKILL) when dropped.
pub struct Server {
    pub base: String,
    child: Child,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// Write a server config into `dir` serving `shops`, with extra TOML.
pub fn write_config(dir: &Path, shops: &Path, extra: &str) -> PathBuf {
    let config = dir.join("kefu.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nshops_dir = {:?}\ncache_dir = {:?}\n{extra}\n",
        dir.join("data").display().to_string(),
        shops.display().to_string(),
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("kefu-cache")
            .display()
            .to_string(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

impl Server {
    /// Start `kefu serve --config <config>` and wait until it listens.
    pub fn start(config: &Path) -> Server {
        Self::start_with(config, &[], "info")
    }

    /// Like [`Server::start`], with more arguments to `kefu serve` and
    /// this `KEFU_LOG`.
    pub fn start_with(config: &Path, extra: &[&str], log_filter: &str) -> Server {
        Self::start_with_env(config, extra, log_filter, &[])
    }

    /// Like [`Server::start_with`], with more environment variables.
    pub fn start_with_env(
        config: &Path,
        extra: &[&str],
        log_filter: &str,
        vars: &[(&str, &str)],
    ) -> Server {
        let log = config.with_file_name(format!("server-{}.log", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
            .envs(vars.iter().copied())
            .args(["serve", "--config"])
            .arg(config)
            .args(extra)
            .env("KEFU_KEY_TEA_OIL", TEA_KEY)
            .env("KEFU_KEY_APPAREL", APPAREL_KEY)
            .env("KEFU_KEY_LAB", "test-key-lab")
            .env("KEFU_WEBHOOK_SECRET_LAB", WEBHOOK_SECRET)
            .env("KEFU_ADMIN_TOKEN", ADMIN)
            .env("KEFU_LOG", log_filter)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kefu serve");
        // Two lines: the address once bound, then "kefu ready" once every
        // shop is loaded (nothing more if it stops before).
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let mut ready = String::new();
        stdout.read_line(&mut ready).unwrap();
        if !ready.starts_with("kefu ready") {
            panic!(
                "server did not get ready: {ready:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            base,
            child,
            config: config.to_path_buf(),
            log,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's `/metrics` text.
pub fn metrics(server: &Server) -> String {
    agent()
        .get(server.url("/metrics"))
        .call()
        .expect("metrics answer")
        .into_body()
        .read_to_string()
        .expect("metrics text")
}

/// An HTTP client for the test servers: statuses are answers, not errors.
///
/// Each phase of a call is bounded, not the call as a whole: a whole-call
/// timeout also bounds resolving the address, which ureq does on a new
/// thread per request. The noisy-neighbour measurement would then time 101
/// client threads spawning threads and fighting over the test process's
/// memory map, not the server. (The servers here are addressed by IP, so
/// resolving takes no time.) Waiting for the answer may take a minute (a
/// deploy compiles its component); every other phase is a loopback copy,
/// so a hung server fails a test within 100 s at most.
pub fn agent() -> ureq::Agent {
    let io = Some(Duration::from_secs(10));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(io)
        .timeout_send_request(io)
        .timeout_send_body(io)
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(io)
        .build()
        .into()
}

/// POST JSON with a key; (status, JSON or text body).
pub fn post(
    server: &Server,
    path: &str,
    key: Option<&str>,
    body: impl AsRef<[u8]>,
) -> (u16, Value) {
    try_post(&server.url(path), key, "application/json", body.as_ref())
        .expect("the request or its answer failed")
}

/// POST `body` to a full URL with a key; (status, JSON or text body), or
/// `None` when the request or its answer did not get through (a server
/// killed mid-request).
pub fn try_post(
    url: &str,
    key: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Option<(u16, Value)> {
    let mut req = agent().post(url).header("content-type", content_type);
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let mut resp = req.send(body).ok()?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// GET with a key; (status, JSON or text body).
pub fn get(server: &Server, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(server.url(path));
    if let Some(key) = key {
        req = req.header("x-kefu-key", key);
    }
    let mut resp = req.call().expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Deploy the component `file` to `shop`'s `step` through the API:
/// (status, answer).
pub fn deploy_file(server: &Server, shop: &str, step: &str, file: &str) -> (u16, Value) {
    let bytes = std::fs::read(file).unwrap();
    let mut resp = agent()
        .post(server.url(&format!("/v1/shops/{shop}/steps/{step}/versions")))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/wasm")
        .send(&bytes[..])
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap(),
    )
}

/// Roll `shop`'s `step` back one version through the API: (status, answer).
pub fn roll_back(server: &Server, shop: &str, step: &str) -> (u16, Value) {
    let mut resp = agent()
        .post(server.url(&format!("/v1/shops/{shop}/steps/{step}/rollback")))
        .header("authorization", format!("Bearer {ADMIN}"))
        .send_empty()
        .unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null),
    )
}
