//! Safe rollouts in process (`App::open` and its router, no socket): a
//! canary by customer and its analysis, automatic abort and promotion,
//! and the fallback when a plugin fails. (Swaps and aborts under load
//! against the real binary are in `hotswap`.)

mod support;

use axum::http::Method;
use kefu_tests::multipart;
use serde_json::{Value, json};
use std::path::Path;

use support::inproc::{ADMIN, InProc, KEY, released};

/// The app, with this file's helpers.
type Api = InProc;

/// Shop `tea` whose refund policy is the hostile guest answering "ok"
/// (it rejects every request: the decision share stays the same between
/// versions that answer), with `extra` lines in its refund step.
fn write_shop(shops: &Path, extra: &str) {
    let dir = shops.join("tea");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("shop.toml"),
        format!(
            "name = \"tea\"\napi_key_env = \"KEY_TEA\"\nrevisit_webhook = \"http://127.0.0.1:9/hook\"\nwebhook_secret_env = \"HOOK\"\n\n[steps.refund-policy]\nplugin = {:?}\nconfig = {{ behavior = \"ok\" }}\n{extra}\n",
            support::wasm::HOSTILE
        ),
    )
    .unwrap();
}

impl Api {
    async fn admin(&self, method: Method, path: &str, body: Value) -> (u16, Value) {
        let body = match body {
            Value::Null => Vec::new(),
            body => body.to_string().into_bytes(),
        };
        self.call(method, path, ADMIN, "application/json", body)
            .await
    }

    /// A refund request of `customer` about order `order`.
    async fn refund(&self, customer: &str, order: &str) -> (u16, Value) {
        let mut body: Value = serde_json::from_slice(
            &std::fs::read(support::example("requests/refund-policy/unshipped.json")).unwrap(),
        )
        .unwrap();
        body["customer"]["id"] = json!(customer);
        body["order"]["id"] = json!(order);
        let path = "/v1/shops/tea/refund-decision";
        self.call(
            Method::POST,
            path,
            KEY,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// Deploy a new refund version (the active component, with `config`)
    /// as a canary of `canary` (a percent or a JSON plan).
    async fn deploy_canary(&self, config: &str, canary: &str) -> (u16, Value) {
        let (ct, body) = multipart(&[
            (
                "config",
                "refund.json",
                "application/json",
                config.as_bytes(),
            ),
            ("canary", "canary", "text/plain", canary.as_bytes()),
        ]);
        let path = "/v1/shops/tea/steps/refund-policy/versions";
        self.call(Method::POST, path, ADMIN, &ct, body).await
    }

    async fn canary(&self) -> (u16, Value) {
        self.get("/v1/shops/tea/steps/refund-policy/canary").await
    }

    async fn audit(&self) -> Vec<Value> {
        let (_, audit) = self.get("/v1/audit?shop=tea").await;
        audit["events"].as_array().unwrap().clone()
    }
}

/// Who answered: (status, version, canary, fallback's failed version).
fn who(answer: &(u16, Value)) -> (u16, u64, bool, Option<u64>) {
    let v = &answer.1;
    (
        answer.0,
        v["plugin"]["version"].as_u64().unwrap_or(u64::MAX),
        v["canary"].as_bool().unwrap_or(false),
        v["fallback"]["from_version"].as_u64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_serves_its_share_of_customers_stickily_and_is_promoted() {
    let root = tempfile::tempdir().unwrap();
    write_shop(&root.path().join("shops"), "");
    let api = Api::open(root.path()).await;

    // Bad plans are refused, naming the problem; nothing changes.
    for (plan, needle) in [
        ("0", "percent"),
        ("150", "percent"),
        (r#"{"percent": 10, "steps": [5]}"#, "steps"),
        ("ten", "percent or a JSON plan"),
    ] {
        let (status, out) = api.deploy_canary(r#"{"behavior":"ok","v":2}"#, plan).await;
        assert_eq!(status, 400, "{plan}: {out}");
        assert!(
            out["error"]["message"].as_str().unwrap().contains(needle),
            "{out}"
        );
    }
    assert_eq!(api.canary().await.0, 404);

    let (status, out) = api.deploy_canary(r#"{"behavior":"ok","v":2}"#, "20").await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["status"], "canary");
    let version = out["version"]["version"].as_u64().unwrap();
    let (_, versions) = api.get("/v1/shops/tea/steps/refund-policy/versions").await;
    assert_eq!(versions["active"], 1, "{versions}");
    assert_eq!(versions["versions"][1]["status"], "canary", "{versions}");

    // 20% of customers, each on one side, every answer saying which.
    let mut inside = Vec::new();
    for i in 0..400 {
        let customer = format!("buyer-{i}");
        let first = who(&api.refund(&customer, &format!("o-{i}")).await);
        let again = who(&api.refund(&customer, &format!("p-{i}")).await);
        assert_eq!(first, again, "{customer} changed sides");
        assert_eq!(first.0, 200);
        assert_eq!(first.1, if first.2 { version } else { 1 }, "{first:?}");
        inside.push(first.2);
    }
    let share = inside.iter().filter(|x| **x).count();
    assert!(
        (50..=110).contains(&share),
        "{share} of 400 in a 20% canary"
    );
    let (_, decisions) = api
        .get("/v1/shops/tea/decisions?customer=buyer-0&limit=1")
        .await;
    assert_eq!(
        decisions["decisions"][0]["canary"], inside[0],
        "{decisions}"
    );

    // Deploys, rollbacks and other canaries wait for this one.
    let (status, out) = api.deploy_canary(r#"{"behavior":"ok","v":3}"#, "5").await;
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{out}"
    );
    let rollback = "/v1/shops/tea/steps/refund-policy/rollback";
    assert_eq!(api.admin(Method::POST, rollback, Value::Null).await.0, 409);

    // Raising the percent keeps everyone who was in.
    let path = "/v1/shops/tea/steps/refund-policy/canary";
    let (status, out) = api.admin(Method::POST, path, json!({"percent": 60})).await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["percent"], 60.0);
    let mut now_inside = 0;
    for (i, was) in inside.iter().enumerate() {
        let (_, _, canary, _) = who(&api.refund(&format!("buyer-{i}"), "q").await);
        assert!(!was || canary, "buyer-{i} left the canary when it grew");
        now_inside += usize::from(canary);
    }
    assert!(
        (200..=280).contains(&now_inside),
        "{now_inside} of 400 at 60%"
    );
    let (_, view) = api.canary().await;
    assert_eq!(view["version"], version);
    assert_eq!(view["stable_version"], 1);
    assert_eq!(view["share"], "approved");
    assert!(view["canary"]["calls"].as_u64().unwrap() >= 160, "{view}");
    assert_eq!(view["analysis"]["verdict"], "healthy", "{view}");

    // Promote: everyone gets the new version, the canary is gone.
    let (status, out) = api
        .admin(Method::POST, &format!("{path}/promote"), Value::Null)
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["version"]["version"], version);
    for i in 0..50 {
        let answer = who(&api.refund(&format!("buyer-{i}"), "r").await);
        assert_eq!(answer, (200, version, false, None));
    }
    assert_eq!(api.canary().await.0, 404);
    let actions: Vec<String> = api
        .audit()
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for action in ["canary-started", "canary-changed", "canary-promoted"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not in {actions:?}"
        );
    }
    let metrics = api.app.render_metrics();
    assert!(
        metrics.contains(&format!(
            "kefu_version_calls_total{{shop=\"tea\",step=\"refund-policy\",version=\"{version}\",outcome=\"ok\"}}"
        )),
        "per-version calls missing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_a_fifth_of_its_calls_is_aborted_within_200_of_them() {
    let root = tempfile::tempdir().unwrap();
    write_shop(&root.path().join("shops"), "on_failure = \"error\"");
    let api = Api::open(root.path()).await;
    let config = r#"{"behavior":"fail-percent","percent":20}"#;
    let (status, out) = api.deploy_canary(config, "50").await;
    assert_eq!(status, 201, "{out}");

    let (mut canary_calls, mut failed) = (0, 0);
    for i in 0..2000 {
        let answer = api
            .refund(&format!("buyer-{i}"), &format!("order-{i}"))
            .await;
        let (status, _, canary, _) = who(&answer);
        // A failed call's answer has no plugin: it is the canary's (the
        // stable version never fails).
        if canary || status != 200 {
            canary_calls += 1;
        }
        failed += usize::from(status != 200);
        if i % 10 == 0 && api.canary().await.0 == 404 {
            break;
        }
    }
    assert_eq!(api.canary().await.0, 404, "the canary was not aborted");
    assert!(
        canary_calls <= 200,
        "aborted after {canary_calls} canary calls"
    );
    assert!(failed > 0);
    let abort = api
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "canary-aborted")
        .expect("the abort is audited");
    assert_eq!(abort["actor"], "analysis");
    let reason = abort["reason"].as_str().unwrap();
    assert!(reason.contains("\"check\":\"errors\""), "{reason}");
    assert!(reason.contains("p_value"), "{reason}");
    // The shop's webhook gets the event; the metric counts it.
    let (_, hooks) = api
        .call(
            Method::GET,
            "/v1/shops/tea/webhooks",
            KEY,
            "application/json",
            vec![],
        )
        .await;
    let hooks = hooks.to_string();
    assert!(hooks.contains("canary.aborted"), "{hooks}");
    assert!(api.app.render_metrics().contains(
        "kefu_canary_aborts_total{shop=\"tea\",step=\"refund-policy\",by=\"analysis\"} 1"
    ));
    // Everyone is back on the stable version.
    for i in 0..20 {
        let answer = who(&api
            .refund(&format!("buyer-{i}"), &format!("order-{i}"))
            .await);
        assert_eq!(answer, (200, 1, false, None));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_traps_on_every_call_answers_every_buyer_and_is_aborted() {
    let root = tempfile::tempdir().unwrap();
    write_shop(&root.path().join("shops"), "on_failure = \"previous\"");
    let api = Api::open(root.path()).await;
    let (status, out) = api.deploy_canary(r#"{"behavior":"trap"}"#, "30").await;
    assert_eq!(status, 201, "{out}");
    let version = out["version"]["version"].as_u64().unwrap();

    let (mut non_200, mut fell_back) = (0, 0);
    for i in 0..3000 {
        let answer = api
            .refund(&format!("buyer-{i}"), &format!("order-{i}"))
            .await;
        let (status, answered_by, canary, from) = who(&answer);
        non_200 += usize::from(status != 200);
        if canary {
            // The stable version answered for the trapping canary.
            assert_eq!((answered_by, from), (1, Some(version)), "{}", answer.1);
            assert_eq!(answer.1["fallback"]["code"], "plugin_trap");
            fell_back += 1;
        }
        if i % 20 == 0 && api.canary().await.0 == 404 {
            break;
        }
    }
    assert_eq!(non_200, 0, "a buyer got an error");
    assert!(fell_back >= 100, "{fell_back}");
    assert_eq!(
        api.canary().await.0,
        404,
        "the trapping canary was not aborted"
    );
    let (_, decisions) = api.get("/v1/shops/tea/decisions?limit=1000").await;
    let logged = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["fallback"]["from_version"] == version && d["canary"] == true)
        .count();
    assert_eq!(logged, fell_back, "each fallback is in the decision log");
    assert!(api.app.render_metrics().contains(
        "kefu_fallbacks_total{shop=\"tea\",step=\"refund-policy\",reason=\"plugin_trap\"}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_version_falls_back_as_the_step_says() {
    let root = tempfile::tempdir().unwrap();
    let shops = root.path().join("shops");
    write_shop(&shops, "");
    let api = Api::open(root.path()).await;
    // v2 traps on every call (a trial lets a trap through: it is judged
    // by its calls).
    let (ct, body) = multipart(&[(
        "config",
        "c.json",
        "application/json",
        br#"{"behavior":"trap"}"#,
    )]);
    let path = "/v1/shops/tea/steps/refund-policy/versions";
    let (status, out) = api.call(Method::POST, path, ADMIN, &ct, body).await;
    assert_eq!(status, 201, "{out}");

    // Default (previous): v1 answers, and says for whom.
    let answer = api.refund("buyer-1", "o-1").await;
    assert_eq!(who(&answer), (200, 1, false, Some(2)), "{}", answer.1);
    let mut both = Vec::new();
    for i in 0..100 {
        let answer = api.refund("buyer-1", &format!("b-{i}")).await;
        assert_eq!(who(&answer), (200, 1, false, Some(2)), "{}", answer.1);
        both.push(answer.1["duration_us"].as_u64().unwrap());
    }

    // "error": the caller gets the trap.
    write_shop(&shops, "on_failure = \"error\"");
    api.app
        .reload_shop(&shops.join("tea"), kefu::storage_types::Actor::FileWatcher);
    let answer = api.refund("buyer-1", "o-2").await;
    assert_eq!(answer.0, 502, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], "plugin_trap");
    for i in 0..100 {
        assert_eq!(api.refund("buyer-1", &format!("e-{i}")).await.0, 502);
    }
    // What a fallback adds to the failed call (reported, not asserted:
    // timings belong to measurements): the plugin time of a fallback
    // answer (trap + v1) against the trap's alone, from the log.
    let (_, log) = api.get("/v1/shops/tea/decisions?limit=200").await;
    let mut alone: Vec<u64> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["error"]["code"] == "plugin_trap")
        .map(|d| d["duration_us"].as_u64().unwrap())
        .collect();
    both.sort_unstable();
    alone.sort_unstable();
    eprintln!(
        "fallback: trap + previous version p50 {} µs, p90 {} µs; the trap alone p50 {} µs, p90 {} µs",
        both[50],
        both[90],
        alone[alone.len() / 2],
        alone[alone.len() * 9 / 10]
    );

    // "default" with no earlier version: the bundled plugin answers.
    let alone = tempfile::tempdir().unwrap();
    let shops = alone.path().join("shops");
    std::fs::create_dir_all(shops.join("tea")).unwrap();
    std::fs::write(
        shops.join("tea/shop.toml"),
        format!(
            "name = \"tea\"\napi_key_env = \"KEY_TEA\"\n\n[steps.refund-policy]\nplugin = {:?}\nconfig = {{ behavior = \"trap\" }}\non_failure = \"default\"\n",
            support::wasm::HOSTILE
        ),
    )
    .unwrap();
    let api = Api::open(alone.path()).await;
    let answer = api.refund("buyer-1", "o-1").await;
    assert_eq!(who(&answer), (200, 0, false, Some(1)), "{}", answer.1);
    assert_eq!(answer.1["plugin"]["source"]["kind"], "bundled");
    // A bad on_failure is a config error naming it.
    std::fs::write(
        shops.join("tea/shop.toml"),
        "name = \"tea\"\n[steps.refund-policy]\non_failure = \"sometimes\"\n",
    )
    .unwrap();
    api.app
        .reload_shop(&shops.join("tea"), kefu::storage_types::Actor::FileWatcher);
    let failures = api.app.load_failures().join("\n");
    assert!(
        failures.contains("on_failure") || failures.contains("sometimes"),
        "{failures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_resumes_after_a_restart_with_the_same_customers() {
    let root = tempfile::tempdir().unwrap();
    write_shop(&root.path().join("shops"), "");
    let sides = {
        let api = Api::open(root.path()).await;
        let (status, out) = api.deploy_canary(r#"{"behavior":"ok","v":2}"#, "25").await;
        assert_eq!(status, 201, "{out}");
        let mut sides = Vec::new();
        for i in 0..100 {
            sides.push(who(&api.refund(&format!("buyer-{i}"), "o").await).2);
        }
        sides
    };
    let data = root.path().join("data");
    released(&data).await;
    let api = Api::open(root.path()).await;
    let (status, view) = api.canary().await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["version"].as_u64(), view["percent"].as_f64()),
        (Some(2), Some(25.0))
    );
    for (i, was) in sides.iter().enumerate() {
        let answer = who(&api.refund(&format!("buyer-{i}"), "o").await);
        assert_eq!(answer.2, *was, "buyer-{i} changed sides across the restart");
    }
    // Abort by hand: everyone on v1, audited with the reason.
    let path = "/v1/shops/tea/steps/refund-policy/canary";
    let (status, out) = api
        .admin(
            Method::DELETE,
            path,
            json!({"reason": "the supervisor wants more tests"}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["version"]["status"], "inactive");
    assert_eq!(api.admin(Method::DELETE, path, Value::Null).await.0, 404);
    let abort = api
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "canary-aborted")
        .unwrap();
    assert_eq!(abort["actor"], "admin");
    assert_eq!(abort["reason"], "the supervisor wants more tests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_steps_up_and_is_promoted_by_the_analysis() {
    let root = tempfile::tempdir().unwrap();
    write_shop(&root.path().join("shops"), "analysis = { min_calls = 30 }");
    let api = Api::open(root.path()).await;
    let _background = api.app.start_background().unwrap();
    let plan = r#"{"percent": 20, "steps": [50, 100], "interval_secs": 1}"#;
    let (status, out) = api.deploy_canary(r#"{"behavior":"ok","v":2}"#, plan).await;
    assert_eq!(status, 201, "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut percents = Vec::new();
    let mut i = 0;
    loop {
        for _ in 0..50 {
            i += 1;
            assert_eq!(api.refund(&format!("buyer-{i}"), "o").await.0, 200);
        }
        match api.canary().await {
            (200, view) => {
                let p = view["percent"].as_f64().unwrap();
                if percents.last() != Some(&p) {
                    percents.push(p);
                }
            }
            _ => break,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never promoted: {percents:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(percents.first(), Some(&20.0), "{percents:?}");
    assert!(percents.contains(&50.0), "{percents:?}");
    let (_, versions) = api.get("/v1/shops/tea/steps/refund-policy/versions").await;
    assert_eq!(versions["active"], 2, "{versions}");
    let promoted = api
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "canary-promoted")
        .unwrap();
    assert_eq!(promoted["actor"], "analysis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_table_in_shop_toml_starts_changes_and_ends_the_canary() {
    let root = tempfile::tempdir().unwrap();
    let shops = root.path().join("shops");
    let table = |config: &str, percent: u32| {
        format!("\n[steps.refund-policy.canary]\nconfig = {{ {config} }}\npercent = {percent}\n")
    };
    let reload = |api: &Api| {
        api.app
            .reload_shop(&shops.join("tea"), kefu::storage_types::Actor::FileWatcher)
    };
    write_shop(&shops, &table("behavior = \"ok\", v = 2", 30));
    let started;
    {
        let api = Api::open(root.path()).await;
        let (status, view) = api.canary().await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(
            (view["version"].as_u64(), view["percent"].as_f64()),
            (Some(2), Some(30.0))
        );
        assert_eq!(view["actor"], "startup");
        // A new percent in the file changes it, on the same version.
        write_shop(&shops, &table("behavior = \"ok\", v = 2", 60));
        reload(&api);
        let (_, view) = api.canary().await;
        assert_eq!(
            (view["version"].as_u64(), view["percent"].as_f64()),
            (Some(2), Some(60.0))
        );
        started = view["started_at_ms"].clone();
    }
    let data = root.path().join("data");
    released(&data).await;
    // A restart resumes it and records no new version.
    let api = Api::open(root.path()).await;
    let (_, view) = api.canary().await;
    assert_eq!(
        (view["version"].as_u64(), view["percent"].as_f64()),
        (Some(2), Some(60.0))
    );
    assert_eq!(view["started_at_ms"], started);
    let (_, versions) = api.get("/v1/shops/tea/steps/refund-policy/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );

    // Removing the table ends it.
    write_shop(&shops, "");
    reload(&api);
    assert_eq!(api.canary().await.0, 404);
    let ended = api
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "canary-aborted")
        .unwrap();
    assert!(
        ended["reason"].as_str().unwrap().contains("removed"),
        "{ended}"
    );

    // A table naming a new config starts a canary on a new version;
    // promoted, it stays active across a restart with the same files,
    // and its table starts nothing again.
    write_shop(&shops, &table("behavior = \"ok\", v = 3", 10));
    reload(&api);
    let (_, view) = api.canary().await;
    assert_eq!(view["version"], 3, "{view}");
    let path = "/v1/shops/tea/steps/refund-policy/canary/promote";
    assert_eq!(api.admin(Method::POST, path, Value::Null).await.0, 200);
    reload(&api);
    assert_eq!(api.canary().await.0, 404);
    drop(api);
    released(&data).await;
    let api = Api::open(root.path()).await;
    assert_eq!(api.canary().await.0, 404);
    let (_, versions) = api.get("/v1/shops/tea/steps/refund-policy/versions").await;
    assert_eq!(versions["active"], 3, "{versions}");
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        3,
        "{versions}"
    );
    // A bad table is a config error naming it; the shop keeps serving.
    write_shop(&shops, &table("behavior = \"ok\"", 0));
    reload(&api);
    let failures = api.app.load_failures().join("\n");
    assert!(
        failures.contains("[steps.refund-policy.canary]"),
        "{failures}"
    );
    assert_eq!(api.refund("buyer-1", "o-1").await.0, 200);
}
