//! The operator console in process: sign-in and sessions, CSRF on every
//! form, a shop key kept to its shop, each page in Chinese and English,
//! deploy and rollback from forms (in the audit as the console), decision
//! search by customer and order, a revisit outcome from a form changing
//! the report, CSV exports. (The same as a person does it, in Chromium:
//! tests/console_browser.rs.)

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use kefu::app::{App, Env, ServerConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

const TEA_KEY: &str = "key-tea";
const CRM_KEY: &str = "key-crm";
const ADMIN: &str = "admin-token";

struct Console {
    app: Arc<App>,
    router: Router,
    _dir: tempfile::TempDir,
    /// Cookies the browser would send.
    cookies: HashMap<String, String>,
}

/// An answer: status, headers, body text.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of hidden input `name` in the page.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("no `{name}` in {}", self.text))
            + marker.len();
        self.text[start..].split('"').next().unwrap().to_string()
    }
}

impl Console {
    async fn open() -> Console {
        let dir = tempfile::tempdir().unwrap();
        let shops = dir.path().join("shops");
        for (id, name, var, extra) in [
            ("tea", "山野茶油旗舰店", "KEY_TEA", ""),
            (
                "crm",
                "crm",
                "KEY_CRM",
                "\n[steps.revisit-planner]\nconfig = { unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }\n",
            ),
        ] {
            std::fs::create_dir_all(shops.join(id)).unwrap();
            std::fs::write(
                shops.join(id).join("shop.toml"),
                format!("name = \"{name}\"\napi_key_env = \"{var}\"\n{extra}"),
            )
            .unwrap();
        }
        let config = ServerConfig {
            data_dir: dir.path().join("data"),
            shops_dir: shops,
            cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache")),
            admin_token_env: "ADMIN".into(),
            ..ServerConfig::default()
        };
        let vars: HashMap<&str, &str> =
            HashMap::from([("KEY_TEA", TEA_KEY), ("KEY_CRM", CRM_KEY), ("ADMIN", ADMIN)]);
        let env: Env = Arc::new(move |name: &str| vars.get(name).map(|v| v.to_string()));
        let app = App::open(config, env).await.expect("the app opens");
        Console {
            router: kefu::server::router(app.clone()),
            app,
            _dir: dir,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let req = req.header(header::COOKIE, cookie.join("; "));
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        for set in parts.headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.into(), value.into());
            }
        }
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Page {
            status: parts.status,
            headers: parts.headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(Request::builder().uri(path), Body::empty()).await
    }

    async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    /// Sign in with `key` through the form; the answer to the POST.
    async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/console/sign-in").await;
        assert_eq!(form.status, 200, "{}", form.text);
        let csrf = form.hidden("csrf");
        self.post_form(
            "/console/sign-in",
            &[("key", key), ("csrf", &csrf), ("next", "/console")],
        )
        .await
    }

    /// Deploy `config` to the step at `base` through its form.
    async fn deploy(&mut self, base: &str, csrf: &str, config: &str) -> Page {
        let (content_type, body) = kefu_tests::multipart(&[
            ("csrf", "", "text/plain", csrf.as_bytes()),
            ("config", "", "text/plain", config.as_bytes()),
        ]);
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(format!("{base}/deploy"))
                .header(header::CONTENT_TYPE, content_type),
            body.into(),
        )
        .await
    }

    /// The session's CSRF token, from a page's sign-out form.
    async fn csrf(&mut self) -> String {
        self.get("/console").await.hidden("csrf")
    }

    /// A step call through the API with a shop's key.
    async fn call(&self, path: &str, key: &str, body: &Value) -> Value {
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }
}

fn example(path: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(support::example(&format!("requests/{path}.json"))).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_opens_a_session_and_every_page_answers_in_both_languages() {
    let mut c = Console::open().await;
    // Not signed in: every page sends to the sign-in page, and back after.
    let page = c.get("/console/shops/tea/decisions").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location(),
        "/console/sign-in?next=/console/shops/tea/decisions"
    );

    // The sign-in form's CSRF token is checked.
    let form = c.get("/console/sign-in").await;
    assert!(
        form.text.contains("登录"),
        "Chinese by default: {}",
        form.text
    );
    let forged = c
        .post_form(
            "/console/sign-in",
            &[("key", ADMIN), ("csrf", "not-the-token")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    let wrong = c.sign_in("not-a-key").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text.contains("密钥不正确"), "{}", wrong.text);
    assert!(!c.cookies.contains_key("kefu_session"));

    let signed = c.sign_in(ADMIN).await;
    assert_eq!(signed.status, 303, "{}", signed.text);
    assert_eq!(signed.location(), "/console");
    let set = signed
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(set.starts_with("kefu_session="), "{set}");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");

    let pages = [
        ("/console", "店铺总览"),
        ("/console/shops/tea", "步骤与版本"),
        ("/console/shops/tea/steps/refund-policy", "上传新版本"),
        ("/console/shops/tea/decisions", "全部步骤"),
        ("/console/shops/tea/timeline?customer=nobody", "暂无记录"),
        ("/console/shops/tea/revisits", "回访总结"),
        ("/console/shops/tea/revisits?period=month", "近 30 天"),
        ("/console/shops/tea/kpis", "转主管比例"),
        ("/console/audit", "signed-in"),
    ];
    for (path, text) in pages {
        let page = c.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(
            page.text.contains(text),
            "{path} lacks `{text}`: {}",
            page.text
        );
        assert!(page.text.contains("<html lang=\"zh-CN\">"), "{path}");
    }
    let shop_csv = c.get("/console/shops/tea?format=csv").await;
    assert!(
        shop_csv.text.contains("tea,山野茶油旗舰店,refund-policy,"),
        "{}",
        shop_csv.text
    );
    // The language switch: English, and back where it was.
    let switch = c.get("/console/lang/en?back=/console/shops/tea/kpis").await;
    assert_eq!(switch.status, 303);
    assert_eq!(switch.location(), "/console/shops/tea/kpis");
    let page = c.get("/console/shops/tea/kpis").await;
    assert!(
        page.text.contains("Escalated") && page.text.contains("<html lang=\"en\">"),
        "{}",
        page.text
    );
    // It goes nowhere but the console.
    let away = c.get("/console/lang/zh?back=https://evil.example/").await;
    assert_eq!(away.location(), "/console");

    // A bad query names the problem.
    let bad = c.get("/console/shops/tea/decisions?version=latest").await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("version `latest`"), "{}", bad.text);

    // Sign-out needs the form's token, ends the session, and is audited.
    let csrf = c.csrf().await;
    assert_eq!(
        c.post_form("/console/sign-out", &[("csrf", "x")])
            .await
            .status,
        403
    );
    let out = c.post_form("/console/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(c.get("/console").await.status, 303);
    let audit = c.app.audit(None, 10).unwrap();
    let actions: Vec<String> = audit
        .iter()
        .map(|e| format!("{} {}", e.action, e.actor))
        .collect();
    assert!(
        actions.contains(&"signed-in console-admin".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"signed-out console-admin".to_string()),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_key_sees_its_own_shop_and_nothing_of_another() {
    let mut c = Console::open().await;
    assert_eq!(c.sign_in(TEA_KEY).await.status, 303);
    let overview = c.get("/console").await;
    assert!(
        overview.text.contains("山野茶油旗舰店"),
        "{}",
        overview.text
    );
    assert!(
        !overview.text.contains("/console/shops/crm"),
        "{}",
        overview.text
    );
    for path in [
        "/console/shops/crm",
        "/console/shops/crm/decisions",
        "/console/shops/crm/revisits",
        "/console/shops/crm/kpis",
        "/console/shops/crm/steps/greeting",
        // Whether a shop exists is not told either.
        "/console/shops/no-such-shop",
    ] {
        let page = c.get(path).await;
        assert_eq!(page.status, 403, "{path}: {}", page.text);
    }
    assert_eq!(c.get("/console/shops/tea/decisions").await.status, 200);
    // The shop's page has no deploy form: deploys need the admin token,
    // as in the API.
    let step = c.get("/console/shops/tea/steps/greeting").await;
    assert!(
        step.text.contains("需要管理员令牌") && !step.text.contains("enctype"),
        "{}",
        step.text
    );
    let csrf = c.csrf().await;
    let rollback = c
        .post_form(
            "/console/shops/tea/steps/greeting/rollback",
            &[("csrf", &csrf), ("version", "1")],
        )
        .await;
    assert_eq!(rollback.status, 403);
    // The audit shows its own shop only.
    let audit = c.get("/console/audit").await;
    assert!(
        audit.text.contains("console-shop") && !audit.text.contains(">crm<"),
        "{}",
        audit.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_rollback_from_forms_land_in_the_audit_as_the_console() {
    let mut c = Console::open().await;
    // A refund the bundled rule approves (12,800 fen is under its
    // supervisor threshold of 50,000), for the replay below.
    let quality = example("refund-policy/quality-with-photos");
    let before_deploy = c
        .call("/v1/shops/tea/refund-decision", TEA_KEY, &quality)
        .await;
    assert_eq!(
        before_deploy["output"]["outcome"], "Approve",
        "{before_deploy}"
    );
    c.sign_in(ADMIN).await;
    let csrf = c.csrf().await;
    let base = "/console/shops/tea/steps/refund-policy";
    let before = c
        .app
        .versions("tea", kefu::Step::RefundPolicy)
        .unwrap()
        .versions
        .len() as u64;
    // A form without the session's token is refused, and changes nothing.
    let forged = c
        .deploy(base, "forged", "{\"supervisor_threshold_fen\": 100}")
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(
        c.app
            .versions("tea", kefu::Step::RefundPolicy)
            .unwrap()
            .versions
            .len() as u64,
        before
    );

    for (i, config) in [
        "{\"supervisor_threshold_fen\": 100}",
        "{\"supervisor_threshold_fen\": 200}",
    ]
    .iter()
    .enumerate()
    {
        let done = c.deploy(base, &csrf, config).await;
        assert_eq!(done.status, 303, "{}", done.text);
        assert_eq!(
            done.location(),
            format!("{base}?done=deployed&v={}", before + i as u64 + 1)
        );
    }
    let (first, second) = (before + 1, before + 2);
    let page = c.get(&format!("{base}?done=deployed&v={second}")).await;
    assert!(
        page.text.contains(&format!("已启用新版本 v{second}")),
        "{}",
        page.text
    );
    assert!(
        page.text.contains("supervisor_threshold_fen: 100 → 200"),
        "{}",
        page.text
    );
    // A config that is not JSON names the problem.
    let bad = c.deploy(base, &csrf, "{not json").await;
    assert_eq!(bad.status, 422, "{}", bad.text);

    let back = c
        .post_form(
            &format!("{base}/rollback"),
            &[("csrf", &csrf), ("version", &first.to_string())],
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.text);
    let versions = c.app.versions("tea", kefu::Step::RefundPolicy).unwrap();
    assert_eq!(versions.active, Some(first));
    let audit = c.app.audit(Some("tea"), 10).unwrap();
    let seen: Vec<String> = audit
        .iter()
        .map(|e| format!("{} {}", e.action, e.actor))
        .collect();
    assert!(
        seen.contains(&"rolled-back console-admin".into()),
        "{seen:?}"
    );
    assert!(seen.contains(&"activated console-admin".into()), "{seen:?}");
    let audit_page = c.get("/console/audit").await;
    assert!(
        audit_page.text.contains("rolled-back"),
        "{}",
        audit_page.text
    );
    let csv = c.get("/console/audit?format=csv").await;
    assert!(
        csv.text.starts_with('\u{feff}')
            && csv
                .text
                .contains(&format!("rolled-back,{first},console-admin")),
        "{}",
        csv.text
    );
    let versions_csv = c.get(&format!("{base}?format=csv")).await;
    assert!(
        versions_csv
            .text
            .contains("supervisor_threshold_fen: 100 → 200"),
        "{}",
        versions_csv.text
    );

    // What version `second` (threshold 200 fen) would have decided for
    // the refund the bundled rule approved: a replay from the step page,
    // its report, and the changed decision side by side.
    let started = c
        .post_form(
            &format!("{base}/replays"),
            &[
                ("csrf", &csrf),
                ("version", &second.to_string()),
                ("days", "7"),
            ],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.text);
    let replay = started.location().to_string();
    assert!(replay.starts_with(&format!("{base}/replays/")), "{replay}");
    let mut report = c.get(&replay).await;
    for _ in 0..100 {
        if !report.text.contains("http-equiv=\"refresh\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        report = c.get(&replay).await;
    }
    assert!(
        report.text.contains("已回放") && report.text.contains("done"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("approve → escalate"),
        "{}",
        report.text
    );
    let example_link = {
        let marker = format!("{replay}/examples/");
        let start = report.text.find(&marker).unwrap();
        report.text[start..].split('"').next().unwrap().to_string()
    };
    let side = c.get(&example_link).await;
    assert_eq!(side.status, 200, "{}", side.text);
    assert!(
        side.text.contains("原决策")
            && side.text.contains("候选版本")
            && side.text.contains("Escalate"),
        "{}",
        side.text
    );
    let groups = c.get(&format!("{replay}?format=csv")).await;
    assert!(
        groups.text.contains("flip,approve → escalate,1,"),
        "{}",
        groups.text
    );
    let step_page = c.get(base).await;
    assert!(
        step_page.text.contains(&replay),
        "the step page lists it: {}",
        step_page.text
    );
    let bad_days = c
        .post_form(
            &format!("{base}/replays"),
            &[("csrf", &csrf), ("version", "1"), ("days", "0")],
        )
        .await;
    assert_eq!(bad_days.status, 422, "{}", bad_days.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_found_by_customer_and_order_and_a_revisit_outcome_changes_the_report() {
    let mut c = Console::open().await;
    for (customer, order) in [
        ("buyer-a", "order-1"),
        ("buyer-b", "order-2"),
        ("buyer-a", "order-3"),
    ] {
        let mut req = example("refund-policy/no-reason");
        req["customer"]["id"] = json!(customer);
        req["order"]["id"] = json!(order);
        req["order"]["buyer_id"] = json!(customer);
        c.call("/v1/shops/tea/refund-decision", TEA_KEY, &req).await;
    }
    // One order confirmed: three refund requests on one order, 300%.
    c.call(
        "/v1/shops/tea/order-confirmation",
        TEA_KEY,
        &example("order-confirmation/ok-with-remark"),
    )
    .await;
    c.sign_in(ADMIN).await;
    let kpis = c.get("/console/shops/tea/kpis").await;
    assert!(
        kpis.text.contains("确认订单") && kpis.text.contains("300.0%"),
        "{}",
        kpis.text
    );
    let page = c.get("/console/shops/tea/decisions?customer=buyer-a").await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("order-1")
            && page.text.contains("order-3")
            && !page.text.contains("order-2"),
        "{}",
        page.text
    );
    let page = c.get("/console/shops/tea/decisions?order=order-2").await;
    assert!(
        page.text.contains("buyer-b") && !page.text.contains("order-1"),
        "{}",
        page.text
    );
    // The API searches the same way.
    let api = c
        .router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/v1/shops/tea/decisions?order=order-3")
                .header("authorization", format!("Bearer {TEA_KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let api: Value = serde_json::from_slice(
        &axum::body::to_bytes(api.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(api["decisions"].as_array().unwrap().len(), 1, "{api}");
    assert_eq!(api["decisions"][0]["customer"], "buyer-a");
    // One decision, with its input and output.
    let link_start = page.text.find("/console/shops/tea/decisions/").unwrap();
    let link: String = page.text[link_start..]
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let one = c.get(&link).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert!(
        one.text.contains("order-2") && one.text.contains("输出"),
        "{}",
        one.text
    );
    let csv = c
        .get("/console/shops/tea/decisions?customer=buyer-a&format=csv")
        .await;
    assert_eq!(csv.text.lines().count(), 3, "{}", csv.text);
    // The timeline of buyer-a shows both calls.
    let timeline = c.get("/console/shops/tea/timeline?customer=buyer-a").await;
    assert_eq!(
        timeline
            .text
            .matches("/console/shops/tea/decisions/")
            .count(),
        2,
        "{}",
        timeline.text
    );

    // A revisit due now, its outcome recorded from the form.
    let mut plan = example("revisit-planner/unpaid");
    plan["customer"]["id"] = json!("buyer-c");
    plan["trigger"]["Unpaid"]["created_at"] = json!(chrono::Utc::now().timestamp() - 60);
    c.call("/v1/shops/crm/revisit-plan", CRM_KEY, &plan).await;
    let revisits = c.get("/console/shops/crm/revisits").await;
    assert!(revisits.text.contains("buyer-c"), "{}", revisits.text);
    let action = {
        let start = revisits.text.find("/console/shops/crm/revisits/").unwrap();
        revisits.text[start..]
            .split('"')
            .next()
            .unwrap()
            .to_string()
    };
    let csrf = revisits.hidden("csrf");
    let bad = c
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("result", "reached"),
                ("satisfaction", "9"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let saved = c
        .post_form(
            &action,
            &[
                ("csrf", &csrf),
                ("result", "reached"),
                ("satisfaction", "5"),
                ("note", "很满意"),
                ("agent", "小王"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{}", saved.text);
    let after = c.get(saved.location()).await;
    assert!(after.text.contains("回访结果已保存"), "{}", after.text);
    assert!(
        !after.text.contains("buyer-c</a>"),
        "worked, it is no longer due: {}",
        after.text
    );
    assert!(
        after.text.contains("100.0%"),
        "success rate: {}",
        after.text
    );
    assert!(
        after.text.contains("5 ★: 1"),
        "satisfaction: {}",
        after.text
    );
    let report = c.app.revisit_report("crm", 0, i64::MAX / 2).unwrap();
    assert_eq!((report.done, report.reached), (1, 1));
    // In the audit, as the console's.
    let audit = c.app.audit(Some("crm"), 10).unwrap();
    let outcome = audit
        .iter()
        .find(|e| e.action.as_str() == "revisit-outcome")
        .expect("the outcome is in the audit");
    assert_eq!(outcome.actor.as_str(), "console-admin");
    assert!(
        outcome.reason.contains("reached") && outcome.reason.contains("小王"),
        "{}",
        outcome.reason
    );
    let timeline_csv = c
        .get("/console/shops/tea/timeline?customer=buyer-a&format=csv")
        .await;
    assert_eq!(
        timeline_csv.text.lines().count(),
        3,
        "{}",
        timeline_csv.text
    );
}
