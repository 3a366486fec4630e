//! `kefu check FILE`: which step world does a component implement?

use anyhow::Result;
use clap::Args;
use kefu::{Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct CheckArgs {
    /// The component file (.wasm).
    file: PathBuf,
    /// Do not read or write the compiled-code cache.
    #[arg(long)]
    no_cache: bool,
}

pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: if args.no_cache {
            None
        } else {
            super::default_cache_dir()
        },
        ..RuntimeConfig::default()
    })?;
    let bytes = kefu::read_plugin(&args.file)?;
    let name = args.file.display();
    match runtime.check(&bytes) {
        Ok(plugin) => {
            println!(
                "{name}: implements world `{}` (export `{}`), digest {}",
                plugin.step().world(),
                plugin.step().export(),
                plugin.digest()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) if errors.len() == 1 => {
            println!("{name}: {}", errors[0]);
            Ok(ExitCode::FAILURE)
        }
        Err(errors) => {
            println!("{name}: implements no kefu step world:");
            for e in errors {
                println!("  - {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
