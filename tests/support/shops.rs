//! Shop folders for server tests: the two example shops plus "lab" shops
//! running hostile or broken plugins.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A lab shop whose refund policy is the hostile plugin in `behavior`.
pub fn hostile_shop(shops: &Path, id: &str, behavior: &str) {
    hostile_shop_with(shops, id, &format!("behavior = \"{behavior}\""));
}

/// A shop whose refund plugin is the hostile guest with this inline config
/// (TOML key/values, e.g. `behavior = "spin", iterations = 10`).
pub fn hostile_shop_with(shops: &Path, id: &str, config: &str) {
    let dir = shops.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let toml = format!(
        "name = \"{id}\"\napi_key_env = \"KEFU_KEY_LAB\"\n\n[steps.refund-policy]\nplugin = {:?}\nconfig = {{ {config} }}\n",
        super::wasm::HOSTILE
    );
    std::fs::write(dir.join("shop.toml"), toml).unwrap();
}

/// `<dir>/shops` with tea-oil, apparel, and lab shops: `slow` (loops),
/// `count-a` and `count-b` (count calls in state), `broken` (its refund
/// plugin is not WebAssembly) and `bad-toml` (unparsable shop.toml).
pub fn lab(dir: &Path) -> PathBuf {
    let shops = dir.join("shops");
    for shop in ["tea-oil", "apparel"] {
        copy_dir(&super::example(&format!("shops/{shop}")), &shops.join(shop));
    }
    hostile_shop(&shops, "slow", "loop");
    hostile_shop(&shops, "count-a", "counter");
    hostile_shop(&shops, "count-b", "counter");
    let broken = shops.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("refund.wasm"), "half-written garbage").unwrap();
    std::fs::write(
        broken.join("shop.toml"),
        "name = \"broken\"\napi_key_env = \"KEFU_KEY_LAB\"\n[steps.refund-policy]\nplugin = \"refund.wasm\"\n",
    )
    .unwrap();
    let bad = shops.join("bad-toml");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("shop.toml"), "name = [unclosed").unwrap();
    shops
}

/// `<dir>/shops` with the two example shops (their Python and JavaScript
/// plugins built by plugins/setup.sh) and `crm`, whose planner makes an
/// unpaid order's revisit due at once.
pub fn examples_and_crm(dir: &Path) -> PathBuf {
    let shops = dir.join("shops");
    for shop in ["tea-oil", "apparel"] {
        copy_dir(&super::example(&format!("shops/{shop}")), &shops.join(shop));
    }
    let crm = shops.join("crm");
    std::fs::create_dir_all(&crm).unwrap();
    std::fs::write(
        crm.join("shop.toml"),
        "name = \"客户关系组\"\napi_key_env = \"KEFU_KEY_LAB\"\n\n[steps.revisit-planner]\nconfig = { unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }\n",
    )
    .unwrap();
    shops
}

/// A shop `crm` in `shops` whose revisit planner reminds unpaid orders at
/// once (any hour), with a signed webhook to `webhook`.
pub fn crm(shops: &Path, webhook: &str) {
    std::fs::create_dir_all(shops.join("crm")).unwrap();
    std::fs::write(
        shops.join("crm/shop.toml"),
        format!(
            "name = \"crm\"\napi_key_env = \"KEFU_KEY_LAB\"\nrevisit_webhook = \"{webhook}\"\nwebhook_secret_env = \"KEFU_WEBHOOK_SECRET_LAB\"\n\n[steps.revisit-planner]\nconfig = {{ unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }}\n"
        ),
    )
    .unwrap();
}

/// An unpaid-order revisit request due at `due` for customer `c{i}`.
pub fn unpaid(i: usize, due: i64) -> Value {
    let mut req: Value = serde_json::from_slice(
        &std::fs::read(super::example("requests/revisit-planner/unpaid.json")).unwrap(),
    )
    .unwrap();
    req["customer"]["id"] = json!(format!("c{i}"));
    req["trigger"]["Unpaid"]["created_at"] = json!(due);
    req
}
