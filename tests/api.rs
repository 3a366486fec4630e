//! The HTTP API in process: the application opened with `App::open` and
//! its router called with `tower::ServiceExt::oneshot`, no server process
//! or socket. Auth, error codes, quotas, body limits, deploys and
//! rollbacks, revisit management. (Kill -9, swaps under load, load and the
//! CLI stay with the tests that drive the real binary.)

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use kefu::app::{App, Env, ServerConfig};
use kefu_tests::multipart;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use support::inproc::released;
use tower::ServiceExt;

const TEA_KEY: &str = "key-tea";
const CRM_KEY: &str = "key-crm";
const ADMIN: &str = "admin-token";

/// An app over two shops: `tea` (the bundled defaults) and `crm` (its
/// planner reminds unpaid orders at once).
struct Api {
    app: Arc<App>,
    router: Router,
    dir: tempfile::TempDir,
}

fn write_shops(shops: &Path) {
    std::fs::create_dir_all(shops.join("tea")).unwrap();
    std::fs::write(
        shops.join("tea/shop.toml"),
        "name = \"山野茶油旗舰店\"\napi_key_env = \"KEY_TEA\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(shops.join("crm")).unwrap();
    std::fs::write(
        shops.join("crm/shop.toml"),
        "name = \"crm\"\napi_key_env = \"KEY_CRM\"\n\n[steps.revisit-planner]\nconfig = { unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }\n",
    )
    .unwrap();
}

impl Api {
    async fn open(configure: impl FnOnce(&mut ServerConfig)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let shops = dir.path().join("shops");
        write_shops(&shops);
        let mut config = ServerConfig {
            data_dir: dir.path().join("data"),
            shops_dir: shops,
            cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache")),
            admin_token_env: "ADMIN".into(),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let vars: HashMap<&str, &str> =
            HashMap::from([("KEY_TEA", TEA_KEY), ("KEY_CRM", CRM_KEY), ("ADMIN", ADMIN)]);
        let env: Env = Arc::new(move |name: &str| vars.get(name).map(|v| v.to_string()));
        let app = App::open(config, env).await.expect("the app opens");
        Api {
            router: kefu::server::router(app.clone()),
            app,
            dir,
        }
    }

    /// One request; (status, JSON or text body, headers).
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (parts.status, value, parts.headers)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let (status, body, _) = self.call(Method::GET, path, key, Body::empty()).await;
        (status, body)
    }

    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let (status, body, _) = self.call(Method::POST, path, key, body).await;
        (status, body)
    }
}

fn example(path: &str) -> Vec<u8> {
    std::fs::read(support::example(&format!("requests/{path}.json"))).unwrap()
}

/// (status, error code) of an answer.
fn code(answer: &(StatusCode, Value)) -> (u16, &str) {
    (
        answer.0.as_u16(),
        answer.1["error"]["code"].as_str().unwrap_or("(none)"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_answers_through_the_router_and_its_decision_is_logged() {
    let api = Api::open(|_| {}).await;
    let (status, answer) = api
        .post(
            "/v1/shops/tea/greeting",
            Some(TEA_KEY),
            example("greeting/discount"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["output"]["reply"].as_str().unwrap().contains("您好"),
        "{answer}"
    );
    assert_eq!(answer["plugin"]["source"]["kind"], "bundled");
    assert_eq!(answer["step"], "greeting");
    let id = answer["decision_id"].as_u64().unwrap();
    // Acknowledged means flushed.
    assert!(api.app.flushes() >= 1);
    let (status, log) = api
        .get("/v1/shops/tea/decisions?step=greeting", Some(TEA_KEY))
        .await;
    assert_eq!(status, 200);
    assert_eq!(log["decisions"][0]["id"], id);
    // The world's name works as the endpoint too.
    let (status, _) = api
        .post(
            "/v1/shops/tea/refund-policy",
            Some(TEA_KEY),
            example("refund-policy/unshipped"),
        )
        .await;
    assert_eq!(status, 200);
    let (_, refunds) = api.get("/v1/shops/tea/refunds", Some(ADMIN)).await;
    assert_eq!(
        refunds["refunds"][0]["decision"]["outcome"], "Approve",
        "{refunds}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_open_only_their_own_shop_and_only_the_admin_learns_what_exists() {
    let api = Api::open(|_| {}).await;
    let greet = |shop: &str| format!("/v1/shops/{shop}/greeting");
    // (POST or GET, path, key): the answer's status and code.
    let cases = [
        (true, greet("tea"), None, (401, "unauthorized")),
        (true, greet("tea"), Some("nope"), (403, "forbidden")),
        (true, greet("tea"), Some(CRM_KEY), (403, "forbidden")),
        // The admin token reads a shop's records but does not run its steps.
        (true, greet("tea"), Some(ADMIN), (403, "forbidden")),
        // Unknown shops: a shop key learns nothing, the admin learns it.
        (true, greet("nope"), Some(TEA_KEY), (403, "forbidden")),
        (true, greet("nope"), None, (401, "unauthorized")),
        (
            false,
            "/v1/shops/nope/decisions".into(),
            Some(ADMIN),
            (404, "unknown_shop"),
        ),
        // Admin endpoints.
        (
            false,
            "/v1/plugins".into(),
            Some(TEA_KEY),
            (403, "forbidden"),
        ),
        (false, "/v1/audit".into(), None, (401, "unauthorized")),
    ];
    for (post, path, key, expected) in cases {
        let answer = if post {
            api.post(&path, key, example("greeting/first-visit")).await
        } else {
            api.get(&path, key).await
        };
        assert_eq!(code(&answer), expected, "{path} with {key:?}");
    }
    assert_eq!(api.get("/v1/shops/tea/refunds", Some(ADMIN)).await.0, 200);
    let (status, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        plugins["plugins"].as_array().unwrap().len(),
        10,
        "two shops, five steps"
    );
    assert_eq!(plugins["plugins"][0]["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_of_every_kind_gets_its_code_and_the_shop_keeps_answering() {
    let api = Api::open(|c| c.max_body_kib = 16).await;
    let greet = |body: Vec<u8>| api.post("/v1/shops/tea/greeting", Some(TEA_KEY), body);
    assert_eq!(
        code(&greet(b"{\"customer\": ".to_vec()).await),
        (400, "invalid_json")
    );
    let mut trailing = example("greeting/first-visit");
    trailing.extend_from_slice(b" {}");
    let answer = greet(trailing).await;
    assert_eq!(code(&answer), (400, "invalid_json"));
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trailing")
    );
    let answer = greet(br#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":"many","returning":false},"message":"","agent_name":null}"#.to_vec()).await;
    assert_eq!(code(&answer), (400, "invalid_field"));
    assert_eq!(answer.1["error"]["field"], "customer.order_count");
    assert_eq!(
        code(&greet(vec![b' '; 20 * 1024]).await),
        (413, "body_too_large")
    );
    assert_eq!(
        code(
            &api.post("/v1/shops/tea/farewell", Some(TEA_KEY), "{}")
                .await
        ),
        (404, "unknown_step")
    );
    for path in [
        "/v1/shops/tea/refunds?limit=0",
        "/v1/shops/tea/decisions?limit=abc",
        "/v1/shops/tea/decisions?step=farewell",
        "/v1/shops/tea/revisits?status=lost",
        "/v1/shops/tea/revisits/report?period=year",
    ] {
        assert_eq!(
            code(&api.get(path, Some(TEA_KEY)).await),
            (400, "invalid_query"),
            "{path}"
        );
    }
    assert_eq!(
        code(&api.get("/v2/anything", None).await),
        (404, "not_found")
    );
    assert_eq!(greet(example("greeting/first-visit")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_over_its_quota_gets_429_with_retry_after_and_the_others_answer() {
    // Each shop may log 2 KiB of requests per window: a few requests.
    let api = Api::open(|c| c.quotas.log_kib_per_window = 2).await;
    let body = example("greeting/first-visit");
    let mut refused = None;
    for _ in 0..20 {
        let answer = api
            .call(
                Method::POST,
                "/v1/shops/tea/greeting",
                Some(TEA_KEY),
                body.clone(),
            )
            .await;
        if answer.0 == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(answer);
            break;
        }
        assert_eq!(answer.0, 200, "{}", answer.1);
    }
    let (_, err, headers) = refused.expect("the shop runs into its quota");
    assert_eq!(err["error"]["code"], "quota_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decision log"),
        "{err}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=11).contains(&retry), "Retry-After {retry}");
    // Refused again (within four tries, in case the 10 s window turned).
    let mut again = false;
    for _ in 0..4 {
        let answer = api
            .post("/v1/shops/tea/greeting", Some(TEA_KEY), body.clone())
            .await;
        if code(&answer) == (429, "quota_exceeded") {
            again = true;
            break;
        }
    }
    assert!(again, "refused again within the window");
    let other = api
        .post(
            "/v1/shops/crm/greeting",
            Some(CRM_KEY),
            example("greeting/first-visit"),
        )
        .await;
    assert_eq!(other.0, 200, "another shop is not affected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_and_the_audit_through_the_api() {
    let api = Api::open(|_| {}).await;
    let versions = "/v1/shops/tea/steps/refund-policy/versions";
    let (status, listed) = api.get(versions, Some(ADMIN)).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["active"], 1);
    assert_eq!(listed["versions"][0]["source"], "bundled");
    assert_eq!(listed["versions"][0]["actor"], "startup");

    // Not WebAssembly: refused by name, v1 keeps serving.
    let (status, err) = api
        .post(versions, Some(ADMIN), "half-written garbage")
        .await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str()),
        (422, Some("plugin_rejected")),
        "{err}"
    );
    // Another world's component is refused naming the export it lacks.
    let greeting = kefu::default_plugin(kefu::Step::Greeting).to_vec();
    let (status, err) = api.post(versions, Some(ADMIN), greeting).await;
    assert_eq!(status, 422);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("decide"),
        "{err}"
    );
    assert_eq!(
        code(&api.post(versions, Some(TEA_KEY), "x").await),
        (403, "forbidden")
    );

    // The refund policy's own component, uploaded: version 2.
    let refund = kefu::default_plugin(kefu::Step::RefundPolicy).to_vec();
    let (status, deployed) = api
        .post(
            "/v1/shops/tea/steps/refund-decision/versions",
            Some(ADMIN),
            refund,
        )
        .await;
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["version"]["version"], 2);
    assert_eq!(deployed["version"]["source"], "api");
    assert_eq!(deployed["version"]["config"], json!({}));
    // The version a refund decision is made by.
    let serving = || async {
        let body = example("refund-policy/unshipped");
        let (_, answer) = api
            .post("/v1/shops/tea/refund-decision", Some(TEA_KEY), body)
            .await;
        answer["plugin"]["version"].as_u64()
    };
    assert_eq!(serving().await, Some(2));

    let rollback = "/v1/shops/tea/steps/refund-policy/rollback";
    let (status, back) = api.post(rollback, Some(ADMIN), "").await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["version"]["version"], 1);
    assert_eq!(
        code(&api.post(rollback, Some(ADMIN), r#"{"version": 9}"#).await),
        (404, "not_found")
    );
    assert_eq!(
        code(&api.post(rollback, Some(ADMIN), "{").await),
        (400, "invalid_json")
    );
    assert_eq!(serving().await, Some(1));

    let (_, audit) = api.get("/v1/audit?shop=tea", Some(ADMIN)).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..4],
        ["rolled-back", "activated", "rejected", "rejected"],
        "{audit}"
    );
}

/// An unpaid-order revisit request due at `due` for customer `c{i}`.
fn unpaid(i: usize, due: i64) -> Value {
    let mut req: Value = serde_json::from_slice(&example("revisit-planner/unpaid")).unwrap();
    req["customer"]["id"] = json!(format!("c{i}"));
    req["trigger"]["Unpaid"]["created_at"] = json!(due);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisits_are_planned_worked_and_reported_through_the_api() {
    let api = Api::open(|_| {}).await;
    let later = chrono::Utc::now().timestamp() + 3600;
    let plans = json!({ "requests": [unpaid(1, later), unpaid(2, later), unpaid(3, later)] });
    let (status, out) = api
        .post(
            "/v1/shops/crm/revisit-plans",
            Some(CRM_KEY),
            plans.to_string(),
        )
        .await;
    assert_eq!(
        (status.as_u16(), out["planned"].as_u64()),
        (200, Some(3)),
        "{out}"
    );
    let bad = json!({ "requests": [unpaid(4, later), {"customer": 5}] });
    let answer = api
        .post(
            "/v1/shops/crm/revisit-plans",
            Some(CRM_KEY),
            bad.to_string(),
        )
        .await;
    assert_eq!(code(&answer), (400, "invalid_field"));
    assert_eq!(answer.1["error"]["field"], "requests[1].customer");
    // ...and planned nothing, not even the valid request before it.

    let (_, planned) = api
        .get("/v1/shops/crm/revisits?status=planned", Some(CRM_KEY))
        .await;
    let ids: Vec<u64> = planned["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{planned}");
    async fn outcome_of(api: &Api, id: u64, body: &'static str) -> (StatusCode, Value) {
        let path = format!("/v1/shops/crm/revisits/{id}/outcome");
        api.post(&path, Some(CRM_KEY), body).await
    }
    let outcome = |id, body| outcome_of(&api, id, body);
    let (status, done) = outcome(
        ids[0],
        r#"{"result":"reached","satisfaction":5,"agent":"慧兰"}"#,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["revisit"]["status"], "done");
    assert_eq!(
        code(&outcome(ids[0], r#"{"result":"reached"}"#).await),
        (409, "conflict")
    );
    let answer = outcome(ids[1], r#"{"result":"reached","satisfaction":"high"}"#).await;
    assert_eq!(
        (code(&answer), answer.1["error"]["field"].as_str()),
        ((400, "invalid_field"), Some("satisfaction"))
    );
    assert_eq!(
        code(&outcome(ids[1], r#"{"result":"maybe"}"#).await),
        (400, "invalid_field")
    );
    assert_eq!(
        code(&outcome(999_999, r#"{"result":"reached"}"#).await),
        (404, "not_found")
    );
    let (status, cancelled) = api
        .post(
            &format!("/v1/shops/crm/revisits/{}/cancel", ids[1]),
            Some(CRM_KEY),
            "",
        )
        .await;
    assert_eq!(
        (status.as_u16(), cancelled["revisit"]["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, out) = api
        .post(
            "/v1/shops/crm/customers/c3/do-not-contact",
            Some(CRM_KEY),
            "",
        )
        .await;
    assert_eq!(
        (status.as_u16(), out["cancelled_revisits"].as_u64()),
        (200, Some(1)),
        "{out}"
    );

    // Due in the next hour and worked now: a period from now on has both.
    let path = format!(
        "/v1/shops/crm/revisits/report?from={}&to={}",
        later - 3600 - 10,
        later + 10
    );
    let (status, report) = api.get(&path, Some(CRM_KEY)).await;
    assert_eq!(status, 200, "{report}");
    let counts = ["planned", "done", "cancelled", "reached"].map(|k| report[k].as_u64());
    assert_eq!(counts, [Some(3), Some(1), Some(2), Some(1)], "{report}");
    assert_eq!(report["satisfaction_distribution"]["5"], 1);
    // Nothing of crm's is tea's.
    let (_, tea) = api.get("/v1/shops/tea/revisits", Some(TEA_KEY)).await;
    assert!(tea["revisits"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_runs_a_step_without_any_transport() {
    let api = Api::open(|_| {}).await;
    let shop = api.app.shop("tea").expect("tea is served");
    let call = api
        .app
        .step_call(shop.clone(), kefu::Step::RefundPolicy)
        .unwrap();
    let answer = call
        .run(&example("refund-policy/over-threshold"))
        .await
        .unwrap();
    let output: Value = serde_json::from_str(answer.output.get()).unwrap();
    assert!(output["outcome"].get("Escalate").is_some(), "{output}");
    let call = api.app.step_call(shop, kefu::Step::RefundPolicy).unwrap();
    let err = call.run(b"{\"order\": 1}").await.unwrap_err();
    assert!(
        matches!(&err, kefu::app::StepError::InvalidField { path, .. } if path == "order"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_the_previous_release_opens_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = support::root().join("tests/fixtures/store-0.1.0.tar.gz");
    let untar = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(untar.success());
    let data = dir.path().join("data");
    let api = Api::open(|c| c.data_dir = data).await;

    let (status, log) = api.get("/v1/shops/tea/decisions", Some(TEA_KEY)).await;
    assert_eq!(status, 200, "{log}");
    let steps: Vec<&str> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "refund-policy",
            "refund-policy",
            "refund-policy",
            "order-confirmation",
            "greeting"
        ]
    );
    let (_, refunds) = api.get("/v1/shops/tea/refunds", Some(TEA_KEY)).await;
    let outcomes: Vec<&Value> = refunds["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["decision"]["outcome"])
        .collect();
    assert_eq!(outcomes.len(), 3, "{refunds}");
    assert_eq!(refunds["refunds"][2]["reason"], "Other", "{refunds}");

    let (_, revisits) = api.get("/v1/shops/crm/revisits", Some(CRM_KEY)).await;
    let mut statuses: Vec<(&str, &str)> = revisits["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("c0", "cancelled"),
            ("c1", "cancelled"),
            ("c2", "planned"),
            ("c3", "done"),
            ("tb_xiaowang", "planned"),
        ],
        "{revisits}"
    );
    let done = revisits["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer_id"] == "c3")
        .unwrap();
    assert_eq!(done["outcomes"][0]["result"], "reached");
    assert_eq!(done["outcomes"][0]["satisfaction"], 4);

    // The rollback stuck: the bundled default is active and serves, not
    // the API's version 2 (when this release's bundled default differs
    // from the fixture's, it is activated as a new version).
    let (_, versions) = api
        .get("/v1/shops/tea/steps/refund-policy/versions", Some(ADMIN))
        .await;
    let active = versions["active"].as_u64().unwrap();
    assert_ne!(active, 2, "{versions}");
    assert_eq!(
        versions["versions"][active as usize - 1]["source"],
        "bundled",
        "{versions}"
    );
    assert_eq!(versions["versions"][1]["source"], "api");
    assert_eq!(versions["versions"][1]["actor"], "admin");
    let (_, audit) = api.get("/v1/audit?shop=tea", Some(ADMIN)).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "rolled-back"),
        "{audit}"
    );
    let (status, answer) = api
        .post(
            "/v1/shops/tea/refund-decision",
            Some(TEA_KEY),
            example("refund-policy/unshipped"),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &answer["plugin"]["version"]),
        (200, &json!(active))
    );
    // And what the old release planned keeps working: an outcome on it.
    let planned = revisits["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer_id"] == "tb_xiaowang")
        .unwrap();
    let path = format!("/v1/shops/crm/revisits/{}/outcome", planned["id"]);
    let (status, out) = api
        .post(&path, Some(CRM_KEY), r#"{"result":"refused"}"#)
        .await;
    assert_eq!(
        (status.as_u16(), out["revisit"]["status"].as_str()),
        (200, Some("done")),
        "{out}"
    );

    // The 0.1.0 release's own refund component (its version 2, built
    // against the WIT before the workflow world) serves under today's
    // host and contract.
    let (status, back) = api
        .post(
            "/v1/shops/tea/steps/refund-policy/rollback",
            Some(ADMIN),
            r#"{"version": 2}"#,
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{back}");
    let (status, answer) = api
        .post(
            "/v1/shops/tea/refund-decision",
            Some(TEA_KEY),
            example("refund-policy/unshipped"),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{answer}");
    assert_eq!(answer["plugin"]["version"], 2, "{answer}");
    assert_eq!(answer["output"]["outcome"], "Approve", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_types_every_answer() {
    let api = Api::open(|_| {}).await;
    let (status, doc) = api.get("/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Revisits",
        "RevisitView",
        "RefundView",
        "DecisionView",
        "VersionsView",
        "PluginsView",
        "Report",
        "PlansReport",
        "Activated",
        "Audit",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    let answer = |path: &str, method: &str| {
        doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .unwrap_or("(none)")
            .to_string()
    };
    assert_eq!(
        answer("/v1/shops/{shop}/revisits", "get"),
        "#/components/schemas/Revisits"
    );
    assert_eq!(
        answer("/v1/shops/{shop}/steps/{step}/rollback", "post"),
        "#/components/schemas/Activated"
    );
    assert_eq!(
        schemas["RevisitView"]["properties"]["status"]["$ref"],
        "#/components/schemas/RevisitStatus"
    );
    // A deploy answers 201, or 422 when refused; never 200.
    let deploy = &doc["paths"]["/v1/shops/{shop}/steps/{step}/versions"]["post"]["responses"];
    assert_eq!(
        deploy["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Activated"
    );
    assert!(
        deploy.get("422").is_some() && deploy.get("200").is_none(),
        "{deploy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_even_from_the_path_or_the_method() {
    let api = Api::open(|_| {}).await;
    for path in [
        "/v1/shops/crm/revisits/null%2Cnull/cancel",
        "/v1/shops/crm/revisits/18446744073709551616/cancel",
    ] {
        let (status, body, headers) = api.call(Method::POST, path, Some(CRM_KEY), "").await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some("invalid_path")),
            "{path}: {body}"
        );
        assert_eq!(headers["content-type"], "application/json");
    }
    let (status, body, headers) = api
        .call(Method::DELETE, "/v1/shops/tea/refunds", Some(TEA_KEY), "")
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_typo_never_goes_live() {
    let api = Api::open(|_| {}).await;
    let tea = api.dir.path().join("shops/tea");
    let reload = |config: &str| {
        std::fs::write(
            tea.join("shop.toml"),
            format!(
                "name = \"山野茶油旗舰店\"\napi_key_env = \"KEY_TEA\"\n\n[steps.refund-policy]\nconfig = {{ {config} }}\n"
            ),
        )
        .unwrap();
        api.app
            .reload_shop(&tea, kefu::storage_types::Actor::FileWatcher);
    };
    let refund = || async {
        let body = example("refund-policy/unshipped");
        api.post("/v1/shops/tea/refund-decision", Some(TEA_KEY), body)
            .await
    };
    // A key the refund policy does not know: refused before it serves.
    reload("supervisor_threshhold_fen = 100");
    let (status, answer) = refund().await;
    assert_eq!(status, 200, "the active version keeps serving: {answer}");
    assert_eq!(answer["plugin"]["version"], 1);
    let (_, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    let reason = plugins["failures"]
        .as_array()
        .unwrap()
        .last()
        .expect("the refusal is listed")["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("refused before serving"), "{reason}");
    assert!(reason.contains("supervisor_threshhold_fen"), "{reason}");
    let (_, audit) = api.get("/v1/audit?shop=tea", Some(ADMIN)).await;
    assert_eq!(audit["events"][0]["action"], "rejected", "{audit}");
    // The key spelled right goes live.
    reload("supervisor_threshold_fen = 100");
    let (status, answer) = refund().await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plugin"]["version"], 2);
}

impl Api {
    async fn post_form(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// #27 item 2: a plugin that needs keys the default refuses is deployed
/// with its config, both go live together, and a rollback restores the
/// default with its own config — while refund calls run the whole time,
/// none of them failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_carries_its_config_and_a_rollback_restores_the_old_one() {
    let python = support::example("shops/apparel/plugins/refund.wasm");
    assert!(
        python.exists(),
        "{} is missing: run `source plugins/setup.sh && kefu_build_polyglot` (tests/run.sh does)",
        python.display()
    );
    let python = std::fs::read(python).unwrap();
    let api = Arc::new(Api::open(|_| {}).await);
    let versions = "/v1/shops/tea/steps/refund-decision/versions";

    // A sale item returned without a reason, two days after delivery.
    let mut sale: Value =
        serde_json::from_slice(&example("refund-policy/no-reason-final-sale")).unwrap();
    sale["order"]["delivered_at"] = json!(chrono::Utc::now().timestamp() - 2 * 86_400);
    let sale = sale.to_string();

    // Refund calls throughout: every one must answer 200.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let (api, stop, sale) = (api.clone(), stop.clone(), sale.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut calls = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, answer) = api
                    .post("/v1/shops/tea/refund-decision", Some(TEA_KEY), sale.clone())
                    .await;
                calls += 1;
                if status != 200 {
                    failures.push(answer);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (calls, failures)
        })
    };
    let outcome = || async {
        let (status, answer) = api
            .post("/v1/shops/tea/refund-decision", Some(TEA_KEY), sale.clone())
            .await;
        assert_eq!(status, 200, "{answer}");
        (
            answer["plugin"]["version"].as_u64().unwrap(),
            answer["output"]["outcome"]
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .or_else(|| answer["output"]["outcome"].as_str().map(String::from))
                .unwrap(),
        )
    };
    // The default refuses the Python plugin's key: the trial says so and
    // version 1 keeps serving.
    let config = b"sale_items_final = 0\nno_reason_return_days = 15\n";
    let (ct, body) = multipart(&[("config", "refund.toml", "application/toml", config)]);
    let (status, refused) = api.post_form(versions, &ct, body).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sale_items_final"),
        "{refused}"
    );
    assert_eq!(outcome().await, (1, "Reject".to_string()));
    let failures = |plugins: &Value| plugins["failures"].as_array().unwrap().len();
    let (_, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    assert_eq!(failures(&plugins), 1, "{plugins}");

    // The Python plugin with its config: one version, both together.
    let (ct, body) = multipart(&[
        ("component", "refund.wasm", "application/wasm", &python),
        ("config", "refund.toml", "application/toml", config),
    ]);
    let (status, deployed) = api.post_form(versions, &ct, body).await;
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["version"]["version"], 2);
    assert_eq!(
        deployed["version"]["config"],
        json!({"sale_items_final": 0, "no_reason_return_days": 15})
    );
    assert_eq!(outcome().await, (2, "Approve".to_string()));
    // A version live: the step's rejected deploy no longer counts as a
    // standing failure (#28 item 6).
    let (_, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    assert_eq!(failures(&plugins), 0, "{plugins}");

    // A config-only deploy (JSON) keeps the component: version 3.
    let (ct, body) = multipart(&[(
        "config",
        "refund.json",
        "application/json",
        br#"{"sale_items_final": 1}"#,
    )]);
    let (status, deployed) = api.post_form(versions, &ct, body).await;
    assert_eq!(status, 201, "{deployed}");
    assert_eq!(deployed["version"]["version"], 3);
    assert_eq!(outcome().await, (3, "Reject".to_string()));

    // Back to the default with its own (empty) config.
    let rollback = "/v1/shops/tea/steps/refund-policy/rollback";
    let (status, back) = api.post(rollback, Some(ADMIN), r#"{"version": 1}"#).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["version"]["config"], json!({}));
    assert_eq!(outcome().await, (1, "Reject".to_string()));

    // Every version lists the config it runs with.
    let (_, listed) = api.get(versions, Some(ADMIN)).await;
    let configs: Vec<&Value> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["config"])
        .collect();
    assert_eq!(configs.len(), 3, "{listed}");
    assert!(
        configs.contains(&&json!({"sale_items_final": 1})),
        "{listed}"
    );
    // ...and what changed from the version before it (#28 item 4).
    let changes = |i: usize| -> Vec<String> {
        listed["versions"][i]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert!(changes(0).is_empty(), "{listed}");
    let v2 = changes(1);
    assert!(v2[0].starts_with("component: "), "{v2:?}");
    assert_eq!(
        v2[1..],
        ["+ no_reason_return_days: 15", "+ sale_items_final: 0"],
        "{v2:?}"
    );
    assert_eq!(
        changes(2),
        ["- no_reason_return_days", "sale_items_final: 0 → 1"],
        "{listed}"
    );

    // Bad forms name their problem.
    for (parts, expected) in [
        (
            vec![("config", "c.json", "application/json", &b"[1]"[..])],
            "invalid_config",
        ),
        (
            vec![("config", "c.toml", "application/toml", &b"x = "[..])],
            "invalid_config",
        ),
        (
            vec![("plugin", "p.wasm", "application/wasm", &b"x"[..])],
            "bad_request",
        ),
        (vec![], "bad_request"),
    ] {
        let (ct, body) = multipart(&parts);
        let answer = api.post_form(versions, &ct, body).await;
        assert_eq!(code(&answer), (400, expected), "{}", answer.1);
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (calls, failures) = caller.await.unwrap();
    assert!(calls > 3, "only {calls} calls ran");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
}

/// #27 item 3: a shop whose `shop.toml` no longer loads at start serves
/// the versions it had, degraded (listed, counted, its key accepted); a
/// shop never loaded answers 503 naming the load error; `strict` refuses
/// to start; a fixed file ends the degraded state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_shop_toml_at_start_serves_the_stored_versions_degraded() {
    use sha2::Digest;
    let root = tempfile::tempdir().unwrap();
    let (data, shops) = (root.path().join("data"), root.path().join("shops"));
    write_shops(&shops);
    let at = |c: &mut ServerConfig| {
        c.data_dir = data.clone();
        c.shops_dir = shops.clone();
    };
    let versions = "/v1/shops/tea/steps/refund-policy/versions";
    {
        let api = Api::open(at).await;
        let (ct, body) = multipart(&[(
            "config",
            "c.json",
            "application/json",
            br#"{"min_evidence": 2}"#,
        )]);
        let (status, out) = api.post_form(versions, &ct, body).await;
        assert_eq!(status, 201, "{out}");
    }
    released(&data).await;
    // A typo while kefu was down, and a new shop that never loaded.
    std::fs::write(
        shops.join("tea/shop.toml"),
        "name = \"山野茶油旗舰店\"\napi_key_env = \"KEY_TEA\"\n[steps.refund-policy]\nconfig = { min_evidence = 2 \n",
    )
    .unwrap();
    std::fs::create_dir_all(shops.join("fresh")).unwrap();
    std::fs::write(
        shops.join("fresh/shop.toml"),
        format!(
            "name = \"fresh\"\napi_key_sha256 = \"{}\"\n[steps.refnud-policy]\n",
            hex::encode(sha2::Sha256::digest(b"key-fresh"))
        ),
    )
    .unwrap();

    let api = Api::open(at).await;
    let (status, answer) = api
        .post(
            "/v1/shops/tea/refund-decision",
            Some(TEA_KEY),
            example("refund-policy/unshipped"),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &answer["plugin"]["version"]),
        (200, &json!(2)),
        "{answer}"
    );
    let (status, answer) = api
        .post(
            "/v1/shops/tea/greeting",
            Some(TEA_KEY),
            example("greeting/discount"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let (_, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    let degraded: Vec<&str> = plugins["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["shop"].as_str().unwrap())
        .collect();
    assert_eq!(degraded, ["fresh", "tea"], "{plugins}");
    assert!(
        plugins["degraded"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("shop.toml"),
        "{plugins}"
    );
    assert!(api.app.render_metrics().contains("kefu_shops_degraded 2"));
    assert!(api.app.render_metrics().contains("kefu_load_failures 2"));

    // The never-loaded shop: its key hears what is wrong, others do not.
    let body = example("greeting/discount");
    let answer = api
        .post("/v1/shops/fresh/greeting", Some("key-fresh"), body.clone())
        .await;
    assert_eq!(code(&answer), (503, "plugin_unavailable"), "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refnud-policy"),
        "{}",
        answer.1
    );
    assert_eq!(
        code(
            &api.post("/v1/shops/fresh/greeting", Some(TEA_KEY), body)
                .await
        )
        .0,
        403
    );

    // Fixed: no longer degraded.
    std::fs::write(
        shops.join("tea/shop.toml"),
        "name = \"山野茶油旗舰店\"\napi_key_env = \"KEY_TEA\"\n",
    )
    .unwrap();
    api.app
        .reload_shop(&shops.join("tea"), kefu::storage_types::Actor::Admin);
    let (_, plugins) = api.get("/v1/plugins", Some(ADMIN)).await;
    assert_eq!(
        plugins["degraded"].as_array().unwrap().len(),
        1,
        "{plugins}"
    );
    // #28 item 6: the fixed shop's failure stands no more; the other's does.
    let failing: Vec<&str> = plugins["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["shop"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["fresh"], "{plugins}");
    assert!(api.app.render_metrics().contains("kefu_load_failures 1"));
    drop(api);
    released(&data).await;

    // --strict refuses to start, naming the failures.
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        strict: true,
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache")),
        ..ServerConfig::default()
    };
    at(&mut config);
    let err = kefu::server::serve(config).await.unwrap_err().to_string();
    assert!(err.contains("--strict") && err.contains("fresh"), "{err}");
}

/// #27 item 4: a deploy whose compile outlasts `deploy_wait_secs` answers
/// 202 and goes on; the version activates when done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_that_outlasts_the_wait_answers_202_and_goes_on() {
    let api = Api::open(|c| c.deploy_wait_secs = 0).await;
    let versions = "/v1/shops/tea/steps/refund-policy/versions";
    // A digest no cache has: a real compile.
    let refund = support::unique(kefu::default_plugin(kefu::Step::RefundPolicy).to_vec());
    let (status, pending) = api.post(versions, Some(ADMIN), refund).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["status"], "compiling");
    assert_eq!(pending["versions"], versions);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, listed) = api.get(versions, Some(ADMIN)).await;
        if listed["active"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never activated: {listed}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// #28 (items 6 and 9, in part): every metric the server exposes has its
/// `# HELP`, `kefu_build_info` says the version, and the `Bearer` scheme
/// is case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_described_and_the_bearer_scheme_is_case_insensitive() {
    let api = Api::open(|_| {}).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/v1/shops/tea/greeting")
            .header("authorization", format!("{scheme} {TEA_KEY}"))
            .body(Body::from(example("greeting/discount")))
            .unwrap();
        let resp = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    assert_eq!(
        code(&api.post("/v1/shops/tea/greeting", Some("x"), "").await).0,
        403
    );
    assert_eq!(api.get("/v1/nothing-here", None).await.0, 404);
    let text = api.app.render_metrics();
    // Answers by route template and status (#28 item 6).
    for line in [
        r#"kefu_http_requests_total{route="/v1/shops/{shop}/{step}",method="POST",status="200"} "#,
        r#"kefu_http_requests_total{route="/v1/shops/{shop}/{step}",method="POST",status="403"} "#,
        r#"kefu_http_requests_total{route="unmatched",method="GET",status="404"} "#,
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(typed.len() >= 5, "{text}");
    for name in typed {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    // The process's own figures, as Prometheus users expect them.
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{name} {value}");
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    assert!(
        text.contains(&format!(
            "kefu_build_info{{version=\"{}\",commit=\"{commit}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

/// #28 item 7: a step keeps its newest `keep_versions` versions (and the
/// active and previous ones); the components and compiled artifacts only
/// forgotten versions ran are deleted with them, and at start artifacts
/// nothing runs that were not used for a week go too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_their_components_and_compiled_artifacts_are_let_go() {
    let root = tempfile::tempdir().unwrap();
    let (data, cache) = (root.path().join("data"), root.path().join("cache"));
    let shops = root.path().join("shops");
    write_shops(&shops);
    let at = |c: &mut ServerConfig| {
        c.data_dir = data.clone();
        c.shops_dir = shops.clone();
        c.cache_dir = Some(cache.clone());
        c.keep_versions = 3;
    };
    // Six components that decide alike and differ by a custom section.
    let base = std::fs::read(support::default_plugin("refund-policy")).unwrap();
    let variant = |i: u8| {
        let mut bytes = base.clone();
        let name = format!("kefu-test-{i}");
        let payload = [&[name.len() as u8][..], name.as_bytes(), &[i]].concat();
        bytes.push(0); // a custom section
        bytes.push(payload.len() as u8);
        bytes.extend_from_slice(&payload);
        bytes
    };
    let digests: Vec<String> = (2..=7).map(|i| kefu::runtime_digest(&variant(i))).collect();
    // Versions 2 to 7: only the last three are kept.
    const KEPT: [bool; 6] = [false, false, false, true, true, true];
    let artifact = |digest: &str| {
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(digest))
    };
    let versions = "/v1/shops/tea/steps/refund-policy/versions";
    {
        let api = Api::open(at).await;
        for i in 2..=7u8 {
            let (status, out) = api.post(versions, Some(ADMIN), variant(i)).await;
            assert_eq!(status, 201, "{out}");
            assert_eq!(out["version"]["version"], i as u64);
        }
        let (_, listed) = api.get(versions, Some(ADMIN)).await;
        let kept: Vec<u64> = listed["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert_eq!(kept, [5, 6, 7], "{listed}");
        // Forgotten: not listed, no rollback to them.
        let (status, err) = api
            .post(
                "/v1/shops/tea/steps/refund-policy/rollback",
                Some(ADMIN),
                r#"{"version": 3}"#,
            )
            .await;
        assert_eq!(
            (status.as_u16(), &err["error"]["code"]),
            (404, &json!("not_found"))
        );
        // A rollback to a kept one works, and the versions stay.
        let (status, out) = api
            .post(
                "/v1/shops/tea/steps/refund-policy/rollback",
                Some(ADMIN),
                r#"{"version": 5}"#,
            )
            .await;
        assert_eq!(status, 200, "{out}");
        let (status, _) = api
            .post(
                "/v1/shops/tea/refund-decision",
                Some(TEA_KEY),
                example("refund-policy/unshipped"),
            )
            .await;
        assert_eq!(status, 200);
        for (digest, kept) in digests.iter().zip(KEPT) {
            assert_eq!(artifact(digest), kept, "artifact of {digest}");
        }
    }
    released(&data).await;
    {
        use kefu::storage_types::VersionStore;
        let store = kefu::SledStorage::open(&data).unwrap();
        for (digest, kept) in digests.iter().zip(KEPT) {
            assert_eq!(
                store.component(digest).unwrap().is_some(),
                kept,
                "component {digest}"
            );
        }
    }

    // At start: an artifact nothing runs and unused for 8 days goes; one
    // used yesterday and one of a kept version unused for 8 days stay.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 86_400);
    let aged = |name: &str, at: std::time::SystemTime| {
        let path = cache.join(name);
        if !path.exists() {
            std::fs::write(&path, b"x").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
        path
    };
    let stale = aged(&format!("{}-0123456789abcdef.cwasm", "a".repeat(64)), old);
    let recent = aged(
        &format!("{}-0123456789abcdef.cwasm", "b".repeat(64)),
        std::time::SystemTime::now() - std::time::Duration::from_secs(86_400),
    );
    let kept_file = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&digests[5]))
        .unwrap()
        .file_name();
    let kept_path = aged(&kept_file.to_string_lossy(), old);
    // A compile killed while it wrote its artifact left a part (its
    // writer's pid gone); one of a writer still running stays.
    let part = cache.join(format!(
        "{}-0123456789abcdef.tmp999999999-0",
        "c".repeat(64)
    ));
    std::fs::write(&part, b"half").unwrap();
    let writing = cache.join(format!(
        "{}-0123456789abcdef.tmp{}-0",
        "d".repeat(64),
        std::process::id()
    ));
    std::fs::write(&writing, b"half").unwrap();
    let api = Api::open(at).await;
    assert!(!stale.exists());
    assert!(recent.exists());
    assert!(kept_path.exists());
    assert!(!part.exists(), "a killed writer's part is swept");
    assert!(writing.exists(), "a running writer's part is left");
    drop(api);
    released(&data).await;
}

/// #28 item 10: error messages in Simplified Chinese when
/// `Accept-Language` prefers Chinese, English otherwise; the code and the
/// envelope are the same either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_answer_in_chinese_when_the_caller_prefers_it() {
    let api = Api::open(|_| {}).await;
    let ask = |language: &'static str, key: Option<&'static str>, body: &'static str| {
        let router = api.router.clone();
        async move {
            let mut req = Request::builder()
                .method(Method::POST)
                .uri("/v1/shops/tea/greeting")
                .header("accept-language", language);
            if let Some(key) = key {
                req = req.header("authorization", format!("Bearer {key}"));
            }
            let resp = router
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let language = resp
                .headers()
                .get("content-language")
                .map(|v| v.to_str().unwrap().to_string());
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (status, language, body)
        }
    };
    let (status, language, body) = ask("zh-CN,zh;q=0.9,en;q=0.8", None, "{}").await;
    assert_eq!((status, language.as_deref()), (401, Some("zh-CN")));
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("缺少 API 密钥"),
        "{body}"
    );
    let missing = r#"{"customer":{"id":"x","member_level":null,"order_count":1,"returning":false},"message":"hi","agent_name":null}"#;
    let (status, _, body) = ask("zh", Some(TEA_KEY), missing).await;
    assert_eq!(status, 400);
    assert_eq!(
        (&body["error"]["code"], &body["error"]["field"]),
        (&json!("invalid_field"), &json!("customer.nickname"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("字段 `customer.nickname` 无效：missing field `nickname`"),
        "{body}"
    );
    // English by default, and for a caller who prefers it.
    for language in ["en-US,en;q=0.9,zh-CN;q=0.8", "*"] {
        let (status, content_language, body) = ask(language, Some(TEA_KEY), missing).await;
        assert_eq!((status, content_language), (400, None));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid field `customer.nickname`"),
            "{body}"
        );
    }
    // A success is the same in every language.
    let (status, _, body) = ask("zh-CN", Some(TEA_KEY), r#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":1,"returning":false},"message":"hi","agent_name":null}"#).await;
    assert_eq!(status, 200, "{body}");
}
