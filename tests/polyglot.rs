//! Plugins in Python and JavaScript, built from source by the setup with
//! the real toolchains, and instance reuse.

mod support;

use kefu::{
    CallContext, CallError, Limits, MemoryStateStore, ReusePool, Runtime, RuntimeConfig,
    StateStore, Step, StepOutput,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use support::server::{ADMIN, APPAREL_KEY, Server, TEA_KEY, get, post, write_config};
use support::{Run, example, output, run_example, text, wasm};

/// A plugin `plugins/setup.sh` built into an example shop.
fn built(shop: &str, file: &str) -> String {
    let path: PathBuf = example(&format!("shops/{shop}/plugins/{file}"));
    assert!(
        path.exists(),
        "{} is missing: run `source plugins/setup.sh && kefu_build_polyglot` (tests/run.sh does)",
        path.display()
    );
    path.display().to_string()
}

const PY_REFUND: (&str, &str) = ("apparel", "refund.wasm");
const JS_GREETING: (&str, &str) = ("tea-oil", "greeting.wasm");

fn py_refund(case: &str, now: &str) -> serde_json::Value {
    let plugin = built(PY_REFUND.0, PY_REFUND.1);
    output(&run_example(
        "refund-policy",
        case,
        Run {
            now,
            shop: Some("apparel"),
            plugin: Some(&plugin),
            ..Run::default()
        },
    ))
    .clone()
}

#[test]
fn python_refund_policy_decides_try_on_returns() {
    // Delivered 2026-11-20 14:00; the apparel shop allows 15 days.
    let day8 = py_refund("no-reason", "2026-11-28T14:00:00+08:00");
    assert_eq!(day8["outcome"], "Approve");
    assert_eq!(day8["return_shipping"], "Insurance");
    assert!(text(&day8, "message").contains("吊牌"));
    let day16 = py_refund("no-reason", "2026-12-06T14:00:00+08:00");
    assert!(
        day16["outcome"]["Reject"]
            .as_str()
            .unwrap()
            .contains("within 15 days")
    );
    let sale = py_refund("no-reason-final-sale", "2026-11-21T10:00:00+08:00");
    assert!(
        sale["outcome"]["Reject"]
            .as_str()
            .unwrap()
            .contains("CY-GIFT"),
        "{sale}"
    );
    let photos = py_refund("quality-no-photos", "2026-11-21T10:00:00+08:00");
    assert!(photos["outcome"].get("RequestEvidence").is_some());
    let unshipped = py_refund("unshipped", "2026-11-20T10:00:00+08:00");
    assert_eq!(
        (unshipped["outcome"].as_str(), unshipped["amount"].as_u64()),
        (Some("Approve"), Some(12800))
    );
}

#[test]
fn javascript_greeting_gives_keyword_quick_replies() {
    let plugin = built(JS_GREETING.0, JS_GREETING.1);
    let run = |case: &str, now: &str| {
        output(&run_example(
            "greeting",
            case,
            Run {
                now,
                shop: Some("tea-oil"),
                plugin: Some(&plugin),
                ..Run::default()
            },
        ))
        .clone()
    };
    let courier = run("genuine-and-courier", "2026-11-20T10:00:00+08:00");
    assert_eq!(courier["matched_keywords"], json!(["正品", "快递"]));
    assert_eq!(
        courier["quick_replies"],
        json!(["查询物流", "修改收货地址", "催发货"])
    );
    let cooking = run("unknown-question", "2026-11-20T10:00:00+08:00");
    assert_eq!(
        cooking["quick_replies"],
        json!(["凉拌做法", "炒菜用量", "怎么保存"])
    );
    assert_eq!(cooking["hand_off"], false);
    let night = run("first-visit", "2026-11-21T02:00:00+08:00");
    assert_eq!(night["off_hours"], true);
    assert!(text(&night, "reply").contains("今天08:30"));
    let member = run("returning-member", "2026-11-20T10:00:00+08:00");
    assert!(
        text(&member, "reply").starts_with("尊敬的金卡会员小王"),
        "{member}"
    );
}

#[test]
fn the_example_shops_serve_python_and_javascript_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &example("shops"), "");
    let s = Server::start(&config);
    let greeting = std::fs::read(example("requests/greeting/unknown-question.json")).unwrap();
    let (status, out) = post(&s, "/v1/shops/tea-oil/greeting", Some(TEA_KEY), &greeting);
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["output"]["quick_replies"],
        json!(["凉拌做法", "炒菜用量", "怎么保存"])
    );
    let refund =
        std::fs::read(example("requests/refund-policy/no-reason-final-sale.json")).unwrap();
    for _ in 0..3 {
        let (status, out) = post(
            &s,
            "/v1/shops/apparel/refund-decision",
            Some(APPAREL_KEY),
            &refund,
        );
        assert_eq!(status, 200, "{out}");
        assert!(
            out["output"]["message"]
                .as_str()
                .unwrap()
                .contains("特价清仓款"),
            "{out}"
        );
    }
    let (_, plugins) = get(&s, "/v1/plugins", Some(ADMIN));
    let apparel = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["shop"] == "apparel" && p["step"] == "refund-policy")
        .unwrap()
        .clone();
    assert_eq!(
        (apparel["instances"].as_str(), apparel["calls"].as_u64()),
        (Some("reuse"), Some(3))
    );
}

fn ctx(shop: &str, config: &str) -> CallContext {
    CallContext {
        shop: shop.into(),
        plugin: "refund-policy".into(),
        config_json: config.into(),
        now: 1_795_140_000,
        state: Arc::new(MemoryStateStore::default()) as Arc<dyn StateStore>,
    }
}

fn refund_input(case: &str) -> kefu::StepInput {
    let json = std::fs::read(example(&format!("requests/refund-policy/{case}.json"))).unwrap();
    Step::RefundPolicy.parse_input(&json).unwrap()
}

fn message(out: kefu::CallOutcome) -> String {
    match out.result {
        Ok(StepOutput::RefundPolicy(d)) => d.message,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reused_instance_serves_one_shop_and_is_replaced_after_a_trap() {
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: None,
        limits: Limits {
            timeout_ms: 300,
            ..Limits::default()
        },
        compile_worker: None,
    })
    .unwrap();
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let remember = r#"{"behavior":"remember"}"#;
    // One pool per shop step, as the server keeps them.
    let shop_a = ReusePool::new(plugin.clone());
    let shop_b = ReusePool::new(plugin.clone());
    assert_eq!(
        message(shop_a.call(&rt, ctx("a", remember), &refund_input("unshipped"))),
        "1 "
    );
    assert_eq!(
        message(shop_a.call(&rt, ctx("a", remember), &refund_input("lost-parcel"))),
        "2 T20261118001",
        "reused: guest memory lives on"
    );
    assert_eq!(
        message(shop_b.call(&rt, ctx("b", remember), &refund_input("unshipped"))),
        "1 ",
        "shop b never sees shop a's instance"
    );
    // A fresh call never sees anything.
    assert_eq!(
        message(plugin.call(&rt, ctx("a", remember), &refund_input("unshipped"))),
        "1 "
    );

    // A trap or a timeout throws the instance away.
    let trapped = shop_a.call(
        &rt,
        ctx("a", r#"{"behavior":"trap"}"#),
        &refund_input("unshipped"),
    );
    assert!(matches!(trapped.result, Err(CallError::Trap(_))));
    assert_eq!(
        message(shop_a.call(&rt, ctx("a", remember), &refund_input("unshipped"))),
        "1 ",
        "a new instance after the trap"
    );
    let looped = shop_a.call(
        &rt,
        ctx("a", r#"{"behavior":"loop"}"#),
        &refund_input("unshipped"),
    );
    assert!(matches!(looped.result, Err(CallError::Timeout(_))));
    assert_eq!(
        message(shop_a.call(&rt, ctx("a", remember), &refund_input("unshipped"))),
        "1 ",
        "a new instance after the timeout"
    );
}

#[test]
fn javascript_and_python_instances_can_be_reused() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let js = rt
        .load_file(built(JS_GREETING.0, JS_GREETING.1).as_ref(), Step::Greeting)
        .unwrap();
    let pool = ReusePool::new(js);
    let greet = |config: &str, case: &str| {
        let json = std::fs::read(example(&format!("requests/greeting/{case}.json"))).unwrap();
        let input = Step::Greeting.parse_input(&json).unwrap();
        let mut c = ctx("tea-oil", config);
        c.plugin = "greeting".into();
        pool.call(&rt, c, &input).result
    };
    let tea = std::fs::read_to_string(support::shop_config("tea-oil", "greeting")).unwrap();
    let tea: toml::Table = toml::from_str(&tea).unwrap();
    let tea = serde_json::to_string(&tea).unwrap();
    // Calls 1-3 on one instance, one of them throwing (a plugin error):
    // the instance keeps working and keeps no config between calls.
    assert!(
        matches!(greet(&tea, "discount"), Ok(StepOutput::Greeting(g)) if g.reply.contains("山野茶油"))
    );
    assert!(
        matches!(greet(r#"{"nope":1}"#, "discount"), Err(CallError::Plugin(m)) if m.contains("unknown key `nope`"))
    );
    assert!(
        matches!(greet("{}", "discount"), Ok(StepOutput::Greeting(g)) if g.reply.contains("欢迎光临本店"))
    );
    assert_eq!(pool.idle(), 1, "one instance served all three calls");

    let py = rt
        .load_file(built(PY_REFUND.0, PY_REFUND.1).as_ref(), Step::RefundPolicy)
        .unwrap();
    let pool = ReusePool::new(py);
    for _ in 0..3 {
        let out = pool.call(&rt, ctx("apparel", "{}"), &refund_input("unshipped"));
        assert!(out.result.is_ok(), "{:?}", out.result);
    }
    assert_eq!(pool.idle(), 1);
}

/// #28 item 2: `kefu serve` binds first and says so; while the shops load
/// (here the example shops compile their Python and JavaScript plugins
/// into an empty cache, seconds of work) `/readyz` answers 503 with how
/// far loading got, and a shop not loaded yet answers 503 `starting` with
/// a `Retry-After`, not 404. A second server on the same port says "cannot
/// listen" once and stops before loading anything.
#[test]
fn the_port_opens_before_the_shops_load_and_readyz_says_how_far() {
    use std::io::BufRead;
    built(PY_REFUND.0, PY_REFUND.1);
    built(JS_GREETING.0, JS_GREETING.1);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nshops_dir = {:?}\ncache_dir = {:?}\n",
            dir.path().join("data"),
            example("shops"),
            dir.path().join("empty-cache"),
        ),
    )
    .unwrap();
    // Not `support::kefu()`: its shared compile cache would be warm.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kefu"))
        .env_remove("KEFU_CACHE_DIR")
        .args(["serve", "--config"])
        .arg(&config)
        .env("KEFU_KEY_TEA_OIL", TEA_KEY)
        .env("KEFU_KEY_APPAREL", APPAREL_KEY)
        .env("KEFU_ADMIN_TOKEN", ADMIN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("kefu listening on http://"), "{line}");
    let base = line.split_whitespace().nth(3).unwrap().to_string();
    let agent = support::server::agent();

    // Starting, until the folder is read; then how many are loaded.
    let progress = loop {
        let mut ready = agent.get(format!("{base}/readyz")).call().unwrap();
        let text = ready.body_mut().read_to_string().unwrap();
        assert_eq!(ready.status().as_u16(), 503, "{text}");
        assert!(text.starts_with("starting: "), "{text}");
        if text.contains(" of 2 shops loaded") {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(progress.contains("loading apparel"), "{progress}");
    // apparel (Python) loads first; tea-oil is not served yet.
    let greeting = std::fs::read(example("requests/greeting/unknown-question.json")).unwrap();
    let mut early = agent
        .post(format!("{base}/v1/shops/tea-oil/greeting"))
        .header("authorization", format!("Bearer {TEA_KEY}"))
        .send(&greeting[..])
        .unwrap();
    assert_eq!(early.status().as_u16(), 503);
    assert_eq!(early.headers()["retry-after"], "1");
    let body: serde_json::Value =
        serde_json::from_str(&early.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "starting", "{body}");

    // A second server on the same port fails at once, saying so once.
    let port = base.rsplit(':').next().unwrap();
    let second = support::kefu()
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--data", &dir.path().join("data2").display().to_string()])
        .env("KEFU_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.matches("cannot listen on").count(), 1, "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(!err.contains("loading shops"), "{err}");

    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("kefu ready: 2 shops, 0 load failures"),
        "{line}"
    );
    let mut ready = agent.get(format!("{base}/readyz")).call().unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert!(
        ready
            .body_mut()
            .read_to_string()
            .unwrap()
            .starts_with("ready: 2 shops")
    );
    let mut answer = agent
        .post(format!("{base}/v1/shops/tea-oil/greeting"))
        .header("authorization", format!("Bearer {TEA_KEY}"))
        .send(&greeting[..])
        .unwrap();
    assert_eq!(
        answer.status().as_u16(),
        200,
        "{}",
        answer.body_mut().read_to_string().unwrap()
    );
    let _ = child.kill();
    let _ = child.wait();
}
