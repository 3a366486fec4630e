//! Watching the shops directory: a debounced change under a shop's folder
//! reloads that shop, off the request path.

use super::deploy::Deployer;
use crate::storage::Actor;
use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, new_debouncer_opt};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the files must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Keeps the watch alive; dropping it stops watching.
pub struct ShopWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, NoCache>,
}

/// The shop folders that `paths` fall in.
fn touched_shops(shops_dir: &Path, paths: impl Iterator<Item = PathBuf>) -> BTreeSet<PathBuf> {
    paths
        .filter_map(|p| {
            let rel = p.strip_prefix(shops_dir).ok()?;
            let first = rel.components().next()?;
            Some(shops_dir.join(first))
        })
        .collect()
}

/// Whether an event can change what a shop runs. Opening or reading a file
/// cannot, and must not count: the reload itself reads the shop's files,
/// so counting reads would reload every shop forever.
fn changes_files(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

pub fn watch(shops_dir: &Path, deployer: Arc<Deployer>) -> notify::Result<ShopWatcher> {
    let dir = shops_dir.canonicalize()?;
    let root = dir.clone();
    // No file-id cache: which shop folder changed is all a reload needs,
    // and the cache reads the metadata of every file under the shops
    // directory when the watch starts (a fifth of a 10,000-shop start).
    let mut debouncer = new_debouncer_opt::<_, notify::RecommendedWatcher, NoCache>(
        DEBOUNCE,
        None,
        move |result: DebounceEventResult| match result {
            Ok(events) => {
                let paths = events
                    .into_iter()
                    .filter(|e| changes_files(&e.event.kind))
                    .flat_map(|e| e.event.paths);
                for shop in touched_shops(&root, paths) {
                    tracing::info!(shop = %shop.display(), "shop files changed: reloading");
                    metrics::counter!("kefu_shop_reloads_total", "trigger" => "file-watcher")
                        .increment(1);
                    deployer.reload_shop(&shop, Actor::FileWatcher);
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %e, "file watch error");
                }
            }
        },
        NoCache,
        notify::Config::default(),
    )?;
    debouncer.watch(&dir, RecursiveMode::Recursive)?;
    Ok(ShopWatcher {
        _debouncer: debouncer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_do_not_count_as_changes() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind};
        assert!(!changes_files(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_files(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_files(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_files(&EventKind::Create(CreateKind::File)));
        assert!(changes_files(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_files(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn paths_map_to_their_shop_folder() {
        let root = Path::new("/srv/shops");
        let shops = touched_shops(
            root,
            [
                "/srv/shops/tea/refund.wasm",
                "/srv/shops/tea/config/greeting.toml",
                "/srv/shops/apparel/shop.toml",
                "/elsewhere/x",
            ]
            .into_iter()
            .map(PathBuf::from),
        );
        let expected: BTreeSet<PathBuf> = ["/srv/shops/apparel", "/srv/shops/tea"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(shops, expected);
    }
}
