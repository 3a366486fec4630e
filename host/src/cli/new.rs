//! `kefu new --step STEP --lang rust|python|js DIR`: a plugin project that
//! builds with one command and passes `kefu check` and `kefu run` as is.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kefu::Step;
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Args)]
pub struct NewArgs {
    /// The step the plugin implements.
    #[arg(long)]
    step: Step,
    /// The language to write it in.
    #[arg(long)]
    lang: Lang,
    /// The folder to create (must not exist, or be empty).
    dir: std::path::PathBuf,
}

const WIT: &str = include_str!("../../../wit/workflow.wit");
const JS_BUILD: &str = include_str!("../../../plugins/js/build.mjs");

/// (step, Rust, Python, JavaScript) sources.
const SOURCES: [(Step, &str, &str, &str); 5] = [
    (
        Step::Greeting,
        include_str!("templates/rust/greeting.rs"),
        include_str!("templates/python/greeting.py"),
        include_str!("templates/js/greeting.js"),
    ),
    (
        Step::OrderConfirmation,
        include_str!("templates/rust/order-confirmation.rs"),
        include_str!("templates/python/order-confirmation.py"),
        include_str!("templates/js/order-confirmation.js"),
    ),
    (
        Step::RefundPolicy,
        include_str!("templates/rust/refund-policy.rs"),
        include_str!("templates/python/refund-policy.py"),
        include_str!("templates/js/refund-policy.js"),
    ),
    (
        Step::RevisitPlanner,
        include_str!("templates/rust/revisit-planner.rs"),
        include_str!("templates/python/revisit-planner.py"),
        include_str!("templates/js/revisit-planner.js"),
    ),
    (
        Step::Workflow,
        include_str!("templates/rust/workflow.rs"),
        include_str!("templates/python/workflow.py"),
        include_str!("templates/js/workflow.js"),
    ),
];

/// A sample input per step, from the example requests.
fn sample_input(step: Step) -> &'static str {
    match step {
        Step::Greeting => include_str!("../../../examples/requests/greeting/discount.json"),
        Step::OrderConfirmation => {
            include_str!("../../../examples/requests/order-confirmation/ok-with-remark.json")
        }
        Step::RefundPolicy => {
            include_str!("../../../examples/requests/refund-policy/unshipped.json")
        }
        Step::RevisitPlanner => {
            include_str!("../../../examples/requests/revisit-planner/delivered.json")
        }
        Step::Workflow => include_str!("../../../examples/requests/workflow/message.json"),
    }
}

pub fn run(args: NewArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        })
        .filter(|n| !n.is_empty() && n.starts_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or_else(|| format!("my-{}", args.step.world()));
    let (_, rust, python, js) = SOURCES
        .into_iter()
        .find(|s| s.0 == args.step)
        .expect("every step has templates");
    let world = args.step.world();
    let fill = |t: &str| t.replace("{name}", &name).replace("{world}", world);
    write(dir, "wit/workflow.wit", WIT)?;
    write(dir, "sample-input.json", sample_input(args.step))?;
    write(
        dir,
        "config.toml",
        "# This plugin's config: the shop's settings, given to the plugin as a JSON\n\
         # object by `config.get()`. Deploy it with the plugin (see README.md).\n",
    )?;
    let (build, out) = match args.lang {
        Lang::Rust => {
            write(
                dir,
                "Cargo.toml",
                &fill(include_str!("templates/rust/Cargo.toml")),
            )?;
            write(dir, "src/lib.rs", rust)?;
            write(dir, ".gitignore", "/target\n")?;
            let file = format!(
                "target/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            );
            (
                "rustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2"
                    .to_string(),
                file,
            )
        }
        Lang::Python => {
            write(dir, "app.py", python)?;
            write(
                dir,
                ".gitignore",
                "/.venv\n/wit_world\n__pycache__/\nplugin.wasm\n",
            )?;
            (
                format!(
                    "python3 -m venv .venv    # once; a system Python may refuse `pip install`\n\
                     .venv/bin/pip install componentize-py==0.25.1\n\
                     .venv/bin/componentize-py -d wit -w {world} componentize app -o plugin.wasm"
                ),
                "plugin.wasm".into(),
            )
        }
        Lang::Js => {
            write(dir, "plugin.js", js)?;
            write(
                dir,
                "package.json",
                &fill(include_str!("templates/js/package.json")),
            )?;
            write(dir, "build.mjs", JS_BUILD)?;
            write(dir, ".gitignore", "node_modules/\nplugin.wasm\n")?;
            (
                "npm install\nnpm run build".to_string(),
                "plugin.wasm".into(),
            )
        }
    };
    write(dir, "README.md", &readme(&name, world, &build, &out))?;
    println!(
        "created {} ({:?}, step {world})\n\nnext:\n  cd {}\n{}",
        dir.display(),
        args.lang,
        dir.display(),
        indent(&build)
    );
    println!(
        "  kefu check {out}\n  kefu run --step {world} --plugin {out} --input sample-input.json"
    );
    Ok(ExitCode::SUCCESS)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn write(dir: &Path, rel: &str, text: &str) -> Result<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

fn readme(name: &str, world: &str, build: &str, out: &str) -> String {
    format!(
        "# {name}\n\nA kefu plugin for the `{world}` step (see `wit/workflow.wit`).\n\n\
         ## Build\n\n```sh\n{build}\n```\n\n## Try it\n\n```sh\nkefu check {out}\n\
         kefu run --step {world} --plugin {out} --input sample-input.json --config config.toml\n```\n\n\
         ## Deploy\n\nCopy it into the shop's folder (`cp {out} SHOP_FOLDER/{world}.wasm`) \
         and name it in the shop's `shop.toml`:\n\n\
         ```toml\n[steps.{world}]\nplugin = \"{world}.wasm\"\n```\n\n\
         or upload it with the config it needs (the bundled defaults refuse keys they do not \
         know, and an upload without `config` keeps the step's config):\n\n\
         ```sh\ncurl -X POST -F component=@{out} -F config=@config.toml \\\n     \
         -H \"Authorization: Bearer $KEFU_ADMIN_TOKEN\" \\\n     \
         http://127.0.0.1:8080/v1/shops/SHOP/steps/{world}/versions\n```\n"
    )
}
