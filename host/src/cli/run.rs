//! `kefu run`: one plugin call, locally, like a shop's request would make.

use anyhow::{Context, Result, bail};
use clap::Args;
use kefu::{CallContext, Limits, MemoryStateStore, Runtime, RuntimeConfig, StateStore, Step};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct RunArgs {
    /// Step to run, by world or API name (greeting, order-confirmation,
    /// refund-policy or refund-decision, revisit-planner or revisit-plan,
    /// workflow). Read from the plugin's world when omitted.
    #[arg(long, value_parser = parse_step)]
    step: Option<Step>,
    /// The plugin component (.wasm); the bundled default plugin when omitted.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// The step's input, a JSON file ("-" for standard input).
    #[arg(long)]
    input: PathBuf,
    /// The plugin's config, a TOML or JSON file (by extension).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The call's time: RFC 3339 (2026-11-11T10:00:00+08:00) or unix seconds.
    /// Defaults to now.
    #[arg(long)]
    now: Option<String>,
    /// Shop name the call is made for (scopes the plugin's state).
    #[arg(long, default_value = "local")]
    shop: String,
    /// A JSON file holding the plugin's state: read before the call and
    /// written back after it, so consecutive runs see earlier writes.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Wall-clock limit of the call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit of the call, in MiB.
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Do not read or write the compiled-code cache.
    #[arg(long)]
    no_cache: bool,
    /// Make this many calls (to measure); the report shows each duration
    /// and the output of the last.
    #[arg(long, default_value_t = 1)]
    calls: u32,
    /// Reuse one instance across calls instead of a fresh one per call.
    #[arg(long)]
    reuse: bool,
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let mut limits = Limits::default();
    if let Some(ms) = args.timeout_ms {
        limits.timeout_ms = ms;
    }
    if let Some(mib) = args.memory_mib {
        limits.memory_mib = mib;
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: if args.no_cache {
            None
        } else {
            super::default_cache_dir()
        },
        limits,
        compile_worker: None,
    })?;
    let (step, plugin) = match (&args.plugin, args.step) {
        (Some(path), Some(step)) => (step, runtime.load_file(path, step)?),
        (Some(path), None) => {
            let plugin = runtime.check(&kefu::read_plugin(path)?).map_err(|errors| {
                let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::anyhow!(
                    "{} implements no kefu step world ({}); name one with --step",
                    path.display(),
                    why.join("; ")
                )
            })?;
            (plugin.step(), plugin)
        }
        (None, Some(step)) => (step, runtime.load(kefu::default_plugin(step), step)?),
        (None, None) => bail!("say which step to run: --step STEP, or --plugin FILE.wasm"),
    };
    let input_bytes = read_input(&args.input)?;
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&input_bytes) {
        bail!("{} is not JSON: {e}", args.input.display());
    }
    let input = step.parse_input(&input_bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid {step} input: field `{}`: {}",
            args.input.display(),
            e.path,
            e.message
        )
    })?;
    let config_json = match &args.config {
        Some(path) => read_config(path)?,
        None => "{}".to_string(),
    };
    let now = match &args.now {
        Some(text) => parse_time(text)?,
        None => chrono::Utc::now().timestamp(),
    };
    let plugin_name = step.world().to_string();
    let store = Arc::new(MemoryStateStore::default());
    if let Some(path) = &args.state {
        load_state(path, &args.shop, &plugin_name, store.as_ref())?;
    }

    let ctx = CallContext {
        shop: args.shop.clone(),
        plugin: plugin_name,
        config_json,
        now,
        state: store.clone(),
    };
    let pool = args.reuse.then(|| kefu::ReusePool::new(plugin.clone()));
    let mut durations = Vec::new();
    let mut outcome = None;
    for _ in 0..args.calls.max(1) {
        let this = match &pool {
            Some(pool) => pool.call(&runtime, ctx.clone(), &input),
            None => plugin.call(&runtime, ctx.clone(), &input),
        };
        durations.push(this.duration.as_micros() as u64);
        let failed = this.result.is_err();
        outcome = Some(this);
        if failed {
            break;
        }
    }
    let outcome = outcome.expect("at least one call");
    if let Some(path) = &args.state {
        save_state(path, store.as_ref())?;
    }

    let mut report = json!({
        "step": step,
        "digest": plugin.digest(),
        "now": now,
        "duration_us": outcome.duration.as_micros() as u64,
        "memory_bytes": outcome.memory_peak,
        "logs": outcome.logs,
    });
    if durations.len() > 1 {
        report["calls"] = json!(durations.len());
        report["instance"] = json!(if args.reuse { "reused" } else { "fresh" });
        report["durations_us"] = json!(durations);
    }
    if outcome.logs_dropped > 0 {
        report["logs_dropped_bytes"] = json!(outcome.logs_dropped);
    }
    let code = match outcome.result {
        Ok(output) => {
            report["output"] = serde_json::to_value(output)?;
            ExitCode::SUCCESS
        }
        Err(e) => {
            report["error"] = json!({ "code": e.code(), "message": e.to_string() });
            ExitCode::FAILURE
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(code)
}

/// A step by its world name or its API name.
fn parse_step(name: &str) -> Result<Step, String> {
    Step::from_name_or_endpoint(name).ok_or_else(|| {
        let names: Vec<String> = Step::ALL
            .iter()
            .map(|s| match s.world() == s.endpoint() {
                true => s.world().to_string(),
                false => format!("{} ({})", s.world(), s.endpoint()),
            })
            .collect();
        format!(
            "unknown step `{name}`: expected one of {}",
            names.join(", ")
        )
    })
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read input {}", path.display()))
}

/// A TOML or JSON config file, as JSON object text.
fn read_config(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let value: Value = if path.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        serde_json::to_value(table)?
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?
    };
    if !value.is_object() {
        bail!(
            "config {} must be a table/object at the top level",
            path.display()
        );
    }
    Ok(value.to_string())
}

fn parse_time(text: &str) -> Result<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .with_context(|| format!("--now `{text}` is neither unix seconds nor RFC 3339"))
}

fn load_state(path: &Path, shop: &str, plugin: &str, store: &MemoryStateStore) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)?;
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "state file {} must be a JSON object of strings",
                path.display()
            )
        })?;
    let scope = kefu::StateScope::new(shop, plugin);
    for (k, v) in map {
        store.set(&scope, &k, &v)?;
    }
    Ok(())
}

fn save_state(path: &Path, store: &MemoryStateStore) -> Result<()> {
    let map: std::collections::BTreeMap<String, String> = store
        .entries()
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect();
    std::fs::write(path, serde_json::to_string_pretty(&map)?)
        .with_context(|| format!("cannot write state {}", path.display()))
}
