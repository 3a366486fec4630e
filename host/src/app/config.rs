//! The server's TOML config and each shop's `shop.toml`.

use super::deploy::CanaryPlan;
use super::rollout::analysis::Thresholds;
use super::rollout::{OnFailure, StepPolicy};
use crate::runtime::Limits;
use crate::steps::Step;
use crate::storage::ShopRecord;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A config file that cannot be used, naming the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// `kefu serve`'s config. Relative paths are relative to the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where sled keeps its data.
    pub data_dir: PathBuf,
    /// One folder per shop, each with a `shop.toml`.
    pub shops_dir: PathBuf,
    /// Compiled-plugin cache (default: `<data_dir>/compiled`).
    pub cache_dir: Option<PathBuf>,
    /// Environment variable holding the admin token.
    pub admin_token_env: String,
    /// Largest request body, in KiB.
    pub max_body_kib: usize,
    /// Days the decision log keeps entries.
    pub decision_retention_days: u64,
    /// Seconds the decision log keeps entries, instead of the days (for
    /// tests and short-lived data; at least one).
    pub decision_retention_secs: Option<u64>,
    /// sled's page cache, in MiB.
    pub storage_cache_mib: u64,
    /// Free space kept on the data dir's filesystem, in MiB: below it
    /// writes stop (503) before the disk is full. Default: a tenth of the
    /// filesystem, at most 64 MiB; 0 keeps none.
    pub disk_reserve_mib: Option<u64>,
    /// Per-call plugin limits.
    pub limits: Limits,
    /// Per-shop quotas.
    pub quotas: super::quota::Quotas,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
    /// Where state is kept (`[storage]`): sled in `data_dir` unless it
    /// says NATS.
    pub storage: StorageConfig,
    /// The `kefu` executable compiles run in (a worker process of the
    /// idle class); set by `kefu serve`, `None` compiles in process.
    #[serde(skip)]
    pub compile_worker: Option<PathBuf>,
    /// How long an API deploy waits for its compile before answering 202
    /// (the deploy goes on), seconds.
    pub deploy_wait_secs: u64,
    /// Connections and slow clients (`[http]`).
    pub http: HttpConfig,
    /// Refuse to start when any shop or step fails to load (default: start
    /// them degraded on their stored versions).
    pub strict: bool,
    /// Versions kept per shop step, the newest ones; the active, previous
    /// (fallback) and canary versions are kept besides. 0 keeps them all.
    /// Components and compiled artifacts only forgotten versions ran are
    /// deleted with them.
    pub keep_versions: usize,
}

/// Connections and slow clients (`[http]`), for the transport.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections served at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this, seconds.
    pub header_timeout_secs: u64,
    /// A request body may not pause for longer than this, seconds (408).
    pub body_timeout_secs: u64,
    /// How long a stop waits for requests in flight, seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 4096,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            shutdown_grace_secs: 10,
        }
    }
}

/// How the outbox delivers webhooks (`[webhooks]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Tries before a delivery is dead-lettered (listed, re-triable).
    pub max_tries: u32,
    /// A try that takes longer fails, seconds.
    pub timeout_secs: u64,
    /// Deliveries in flight at once, all shops together...
    pub concurrent: usize,
    /// ...and of one shop: a slow endpoint holds only its own shop's.
    pub per_shop: usize,
    /// Longest wait between two tries, seconds (the backoff doubles from
    /// one second up to it, jittered).
    pub max_backoff_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_tries: 12,
            timeout_secs: 5,
            concurrent: 32,
            per_shop: 4,
            max_backoff_secs: 300,
        }
    }
}

/// Which backend keeps the server's state (`[storage]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// sled, embedded, in `data_dir`: one machine, nothing else to run.
    #[default]
    Sled,
    /// NATS JetStream, shared by every node (docs/scale-out.md); each
    /// node keeps a view of it in `data_dir`.
    Nats,
}

/// Where the server keeps its state (`[storage]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    /// The NATS server(s), comma-separated.
    pub url: String,
    /// Prefix of the streams, buckets and subjects kefu makes in NATS
    /// (letters, digits, `-` and `_`): clusters with different prefixes
    /// share a NATS without meeting.
    pub prefix: String,
    /// A NATS credentials file (`.creds`), if the server wants one.
    pub credentials: Option<PathBuf>,
    /// Environment variable holding a NATS token, if the server wants one.
    pub token_env: Option<String>,
    /// This node's name in NATS, unique among the nodes (default: the
    /// host name and the process id).
    pub node: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Sled,
            url: "nats://127.0.0.1:4222".into(),
            prefix: "kefu".into(),
            credentials: None,
            token_env: None,
            node: None,
        }
    }
}

impl StorageConfig {
    /// Why the settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.prefix.is_empty() || !self.prefix.chars().all(valid) {
            return Err(format!(
                "[storage] prefix `{}`: use letters, digits, `-` and `_` only",
                self.prefix
            ));
        }
        if let Some(node) = &self.node
            && (node.is_empty() || node.chars().any(|c| c.is_whitespace() || c == '.'))
        {
            return Err(format!(
                "[storage] node `{node}`: no spaces or dots, not empty"
            ));
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: ".kefu-data".into(),
            shops_dir: "shops".into(),
            cache_dir: None,
            admin_token_env: "KEFU_ADMIN_TOKEN".into(),
            max_body_kib: 256,
            decision_retention_days: 30,
            decision_retention_secs: None,
            storage_cache_mib: 64,
            disk_reserve_mib: None,
            limits: Limits::default(),
            quotas: super::quota::Quotas::default(),
            webhooks: WebhookConfig::default(),
            storage: StorageConfig::default(),
            strict: false,
            http: Default::default(),
            deploy_wait_secs: 60,
            compile_worker: None,
            keep_versions: 20,
        }
    }
}

/// The server settings the environment may set (`KEFU_` and the key in
/// capitals; a table's key after a double underscore, e.g.
/// `KEFU_HTTP__MAX_CONNECTIONS`). Other `KEFU_` variables (keys, the
/// admin token, `KEFU_LOG`...) are not settings and are left alone.
const SETTINGS: &[&str] = &[
    "listen",
    "data_dir",
    "shops_dir",
    "cache_dir",
    "admin_token_env",
    "max_body_kib",
    "decision_retention_days",
    "decision_retention_secs",
    "storage_cache_mib",
    "disk_reserve_mib",
    "deploy_wait_secs",
    "strict",
    "keep_versions",
];
/// Tables whose keys the environment may set.
const TABLES: &[&str] = &["limits", "quotas", "webhooks", "http", "storage"];

impl ServerConfig {
    /// Read a config file; relative paths in it become relative to it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::layered(Some(path), std::iter::empty())
    }

    /// The config from the file at `path` (if any) under the settings the
    /// environment `vars` give (`KEFU_LISTEN`, `KEFU_DATA_DIR`,
    /// `KEFU_HTTP__MAX_CONNECTIONS`...): the environment wins over the
    /// file, the file over the defaults (flags, applied by the caller,
    /// win over both). Relative paths from the file are relative to it;
    /// from the environment, to the working directory.
    pub fn layered(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::new(path, e.to_string()))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| ConfigError::new(path, e.to_string()))?
            }
            None => toml::Table::new(),
        };
        // Paths the file gives are relative to it.
        if let Some(base) = path.map(|p| p.parent().unwrap_or(Path::new("."))) {
            for key in ["data_dir", "shops_dir", "cache_dir"] {
                if let Some(toml::Value::String(dir)) = table.get(key) {
                    let joined = base.join(dir).display().to_string();
                    table.insert(key.into(), toml::Value::String(joined));
                }
            }
            if let Some(toml::Value::Table(storage)) = table.get_mut("storage")
                && let Some(toml::Value::String(file)) = storage.get("credentials")
            {
                let joined = base.join(file).display().to_string();
                storage.insert("credentials".into(), toml::Value::String(joined));
            }
        }
        let mut from_env = Vec::new();
        for (var, value) in vars {
            let Some(name) = var.strip_prefix("KEFU_") else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            match name.split_once("__") {
                None if SETTINGS.contains(&name.as_str()) => {
                    table.insert(name, value);
                }
                Some((t, key)) if TABLES.contains(&t) => {
                    let inner = table
                        .entry(t)
                        .or_insert_with(|| toml::Value::Table(Default::default()));
                    if let toml::Value::Table(inner) = inner {
                        inner.insert(key.into(), value);
                    }
                }
                _ => continue,
            }
            from_env.push(var);
        }
        let source = match (path, from_env.is_empty()) {
            (Some(path), true) => path.display().to_string(),
            (Some(path), false) => format!("{} and {}", path.display(), from_env.join(", ")),
            (None, _) => from_env.join(", "),
        };
        table.try_into().map_err(|e: toml::de::Error| ConfigError {
            path: source,
            message: e.to_string(),
        })
    }

    /// How long the decision log keeps entries, in milliseconds.
    pub fn decision_retention_ms(&self) -> u64 {
        match self.decision_retention_secs {
            Some(secs) => secs.max(1).saturating_mul(1000),
            None => self.decision_retention_days.saturating_mul(86_400_000),
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("compiled"))
    }
}

/// A shop's `shop.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopFile {
    /// Display name.
    pub name: String,
    /// Environment variable holding the shop's API key.
    pub api_key_env: Option<String>,
    /// Or the key's SHA-256 (hex), so the key itself is stored nowhere.
    pub api_key_sha256: Option<String>,
    /// URL that receives the shop's webhooks: revisits come due and the
    /// workflow's actions (optional).
    pub webhook: Option<String>,
    /// The same, under its first name (revisits only had one then); one
    /// of the two at most.
    pub revisit_webhook: Option<String>,
    /// Environment variable holding the secret webhook deliveries are
    /// signed with (required with `webhook`).
    pub webhook_secret_env: Option<String>,
    /// Per-step plugin and config; a missing step uses the bundled plugin.
    #[serde(default)]
    pub steps: BTreeMap<String, StepFile>,
}

/// One step of a shop.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// Component file, relative to the shop folder (default: bundled).
    pub plugin: Option<PathBuf>,
    /// The plugin's config: a TOML/JSON file path or an inline table.
    pub config: Option<ConfigRef>,
    /// "fresh": a new instance per call; "reuse": instances are kept
    /// between calls of this shop's step. Default: fresh for the shop's
    /// own plugin, reuse for the bundled one (kefu's own code, which keeps
    /// nothing between calls).
    #[serde(default)]
    pub instances: Option<InstanceMode>,
    /// What answers when the plugin fails: "previous" (default), "default"
    /// or "error" (see docs/rollouts.md).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Thresholds of the canary analysis (defaults in docs/rollouts.md).
    #[serde(default)]
    pub analysis: Option<Thresholds>,
    /// A version to serve to a share of customers first.
    #[serde(default)]
    pub canary: Option<CanaryFile>,
}

/// `[steps.<step>.canary]`: a plugin and/or config served to `percent`
/// of the shop's customers; what it leaves out is the step's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFile {
    pub plugin: Option<PathBuf>,
    pub config: Option<ConfigRef>,
    pub percent: f64,
    #[serde(default)]
    pub steps: Vec<f64>,
    pub interval_secs: Option<u64>,
}

/// How a step's plugin is instantiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    #[default]
    Fresh,
    Reuse,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ConfigRef {
    File(PathBuf),
    Inline(toml::Table),
}

/// A shop folder, parsed and checked, not yet loaded.
#[derive(Clone, Debug)]
pub struct ShopSpec {
    pub id: String,
    pub dir: PathBuf,
    pub name: String,
    pub key_sha256: Option<[u8; 32]>,
    pub webhook: Option<Webhook>,
    pub steps: BTreeMap<Step, StepSpec>,
}

/// Where a shop's due revisits are POSTed, and the secret that signs them.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    /// The environment variable the secret came from.
    pub secret_env: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("secret_env", &self.secret_env)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct StepSpec {
    pub plugin: Option<PathBuf>,
    pub config_json: String,
    /// As the folder says it (none: the default, see [`StepFile`]).
    pub instances: Option<InstanceMode>,
    /// Fallback and canary analysis.
    pub policy: StepPolicy,
    /// The folder's canary of the step, if it has one.
    pub canary: Option<CanarySpec>,
}

/// A step's canary as its folder says, parsed and checked.
#[derive(Clone, Debug)]
pub struct CanarySpec {
    pub plugin: Option<PathBuf>,
    pub config_json: String,
    pub plan: CanaryPlan,
}

/// Whether a shop id (its folder name) is acceptable.
pub fn valid_shop_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ShopSpec {
    /// Parse `<dir>/shop.toml`. `env` looks up environment variables.
    pub fn load(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = dir.join("shop.toml");
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !valid_shop_id(&id) {
            return Err(ConfigError::new(
                dir,
                "shop folder names may only use letters, digits, - and _ (at most 64)",
            ));
        }
        let text =
            std::fs::read_to_string(&file).map_err(|e| ConfigError::new(&file, e.to_string()))?;
        let parsed: ShopFile =
            toml::from_str(&text).map_err(|e| ConfigError::new(&file, e.to_string()))?;
        let key_sha256 =
            match (&parsed.api_key_env, &parsed.api_key_sha256) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        &file,
                        "set api_key_env or api_key_sha256, not both",
                    ));
                }
                (Some(var), None) => match key_from_env(env, var) {
                    Some(digest) => Some(digest),
                    None => {
                        return Err(ConfigError::new(
                            &file,
                            format!("api_key_env names `{var}`, which is not set"),
                        ));
                    }
                },
                (None, Some(hex_digest)) => Some(parse_sha256(hex_digest).ok_or_else(|| {
                    ConfigError::new(&file, "api_key_sha256 must be 64 hex digits")
                })?),
                (None, None) => None,
            };
        let (key, url) = match (&parsed.webhook, &parsed.revisit_webhook) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    &file,
                    "both webhook and revisit_webhook are set: keep `webhook` (the other is \
                     its earlier name)",
                ));
            }
            (Some(url), None) => ("webhook", Some(url)),
            (None, Some(url)) => ("revisit_webhook", Some(url)),
            (None, None) => ("webhook", None),
        };
        let webhook = match (url, &parsed.webhook_secret_env) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    &file,
                    "webhook_secret_env is set but webhook is not",
                ));
            }
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(ConfigError::new(
                    &file,
                    format!("{key} `{url}` must be an http:// or https:// URL"),
                ));
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    &file,
                    format!(
                        "{key} needs webhook_secret_env: the environment variable \
                         holding the secret every delivery is signed with"
                    ),
                ));
            }
            (Some(url), Some(var)) => match webhook_from_env(env, url, var) {
                Some(webhook) => Some(webhook),
                None => {
                    return Err(ConfigError::new(
                        &file,
                        format!("webhook_secret_env names `{var}`, which is not set"),
                    ));
                }
            },
        };
        let mut steps = BTreeMap::new();
        for (name, step_file) in parsed.steps {
            let step: Step = name.parse().map_err(|e: crate::steps::UnknownStep| {
                ConfigError::new(&file, format!("[steps.{name}]: {e}"))
            })?;
            let config_json = match &step_file.config {
                None => "{}".to_string(),
                Some(config) => config_json_of(dir, config)?,
            };
            let canary = match step_file.canary {
                None => None,
                Some(c) => {
                    let plan = CanaryPlan {
                        percent: c.percent,
                        steps: c.steps,
                        interval_secs: c.interval_secs,
                    };
                    plan.check().map_err(|e| {
                        ConfigError::new(&file, format!("[steps.{name}.canary]: {e}"))
                    })?;
                    Some(CanarySpec {
                        plugin: c.plugin.or(step_file.plugin.clone()).map(|p| dir.join(p)),
                        config_json: match &c.config {
                            None => config_json.clone(),
                            Some(config) => config_json_of(dir, config)?,
                        },
                        plan,
                    })
                }
            };
            let analysis = step_file.analysis.unwrap_or_default();
            analysis
                .check()
                .map_err(|e| ConfigError::new(&file, format!("[steps.{name}.analysis]: {e}")))?;
            steps.insert(
                step,
                StepSpec {
                    plugin: step_file.plugin.map(|p| dir.join(p)),
                    config_json,
                    instances: step_file.instances,
                    policy: StepPolicy {
                        on_failure: step_file.on_failure,
                        analysis,
                    },
                    canary,
                },
            );
        }
        Ok(ShopSpec {
            id,
            dir: dir.to_path_buf(),
            name: parsed.name,
            key_sha256,
            webhook,
            steps,
        })
    }
}

impl ShopSpec {
    /// What the shop itself is, to keep for a start on stored versions.
    pub fn record(&self) -> ShopRecord {
        ShopRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            key_sha256: self.key_sha256.map(hex::encode),
            webhook_url: self.webhook.as_ref().map(|w| w.url.clone()),
            webhook_secret_env: self.webhook.as_ref().map(|w| w.secret_env.clone()),
        }
    }

    /// The key of a shop whose `shop.toml` does not load, when the file
    /// is TOML and its key settings are readable, so that the shop's own
    /// key hears what is wrong.
    pub fn readable_key(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Option<[u8; 32]> {
        let text = std::fs::read_to_string(dir.join("shop.toml")).ok()?;
        let table: toml::Table = toml::from_str(&text).ok()?;
        if let Some(var) = table.get("api_key_env").and_then(|v| v.as_str()) {
            return key_from_env(env, var);
        }
        parse_sha256(table.get("api_key_sha256")?.as_str()?)
    }
}

/// A variable's value, when it is set and not empty.
fn set_var(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    env(var).filter(|v| !v.is_empty())
}

/// SHA-256 of the key the variable `var` holds.
fn key_from_env(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<[u8; 32]> {
    set_var(env, var).map(|key| super::access::sha256(key.as_bytes()))
}

/// A webhook to `url` signed with the secret the variable `var` holds.
fn webhook_from_env(env: &dyn Fn(&str) -> Option<String>, url: &str, var: &str) -> Option<Webhook> {
    Some(Webhook {
        url: url.to_string(),
        secret: set_var(env, var)?,
        secret_env: var.to_string(),
    })
}

/// A stored shop record's webhook, with its secret read from the
/// environment again (a record keeps the variable's name only).
pub fn webhook_of(record: &ShopRecord, env: &dyn Fn(&str) -> Option<String>) -> Option<Webhook> {
    webhook_from_env(
        env,
        record.webhook_url.as_ref()?,
        record.webhook_secret_env.as_ref()?,
    )
}

pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// A step's `config` (inline, or a file in the shop folder `dir`) as JSON
/// object text.
fn config_json_of(dir: &Path, config: &ConfigRef) -> Result<String, ConfigError> {
    match config {
        ConfigRef::Inline(table) => {
            Ok(serde_json::to_string(table).expect("TOML tables serialize"))
        }
        ConfigRef::File(path) => read_plugin_config(&dir.join(path)),
    }
}

/// A plugin config file (TOML or JSON by extension) as JSON object text.
pub fn read_plugin_config(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, e.to_string()))?;
    let format = if path.extension().is_some_and(|e| e == "json") {
        ConfigFormat::Json
    } else {
        ConfigFormat::Toml
    };
    plugin_config(&text, format).map_err(|e| ConfigError::new(path, e))
}

/// How a plugin config is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFormat {
    Json,
    Toml,
}

/// A plugin config (a JSON object or a TOML table) as JSON object text,
/// or what is wrong with it.
pub fn plugin_config(text: &str, format: ConfigFormat) -> Result<String, String> {
    let value: serde_json::Value = match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string())?,
        ConfigFormat::Toml => {
            let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
            serde_json::to_value(table).map_err(|e| e.to_string())?
        }
    };
    if !value.is_object() {
        return Err("plugin config must be a table/object".into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kefu.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9001\"\ndata_dir = \"data\"\nmax_body_kib = 64\n[http]\nmax_connections = 100\n",
        )
        .unwrap();
        let config = ServerConfig::layered(
            Some(&file),
            vars(&[
                ("KEFU_LISTEN", "127.0.0.1:9002"),
                ("KEFU_HTTP__MAX_CONNECTIONS", "10"),
                ("KEFU_SHOPS_DIR", "elsewhere/shops"),
                ("KEFU_STRICT", "true"),
                // Not settings: left alone.
                ("KEFU_ADMIN_TOKEN", "secret"),
                ("KEFU_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9002);
        assert_eq!(config.http.max_connections, 10);
        assert_eq!(config.max_body_kib, 64, "from the file");
        assert_eq!(
            config.data_dir,
            dir.path().join("data"),
            "relative to the file"
        );
        assert_eq!(config.shops_dir, Path::new("elsewhere/shops"), "as given");
        assert!(config.strict);
        assert_eq!(config.decision_retention_days, 30, "the default");
        assert_eq!(config.decision_retention_ms(), 30 * 86_400_000);
        // No file: the environment alone.
        let config = ServerConfig::layered(None, vars(&[("KEFU_DATA_DIR", "/srv/kefu")])).unwrap();
        assert_eq!(config.data_dir, Path::new("/srv/kefu"));
    }

    #[test]
    fn a_bad_setting_from_the_environment_names_the_variable() {
        let err = ServerConfig::layered(None, vars(&[("KEFU_LISTEN", "not-an-address")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("KEFU_LISTEN") && err.contains("listen"),
            "{err}"
        );
        let err = ServerConfig::layered(None, vars(&[("KEFU_HTTP__MAX_CONECTIONS", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
    }
}
