//! Workflows through the real binary: events in, the shop's flow and
//! steps run once and in order per subject, timers fire, actions and a
//! timeline come out; bad input is refused naming the field; a flow that
//! loops or fails is stopped and its event kept for a retry; and kill -9
//! while events flow neither loses nor repeats anything.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::server::{ADMIN, Server, get, post, write_config};

const KEY: &str = "test-key-lab";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A shop `wf` on the bundled defaults, with `extra` TOML in its shop.toml.
fn shop(shops: &Path, id: &str, extra: &str) {
    let dir = shops.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("shop.toml"),
        format!("name = \"{id}\"\napi_key_env = \"KEFU_KEY_LAB\"\n{extra}"),
    )
    .unwrap();
}

fn example(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(support::example(path)).unwrap()).unwrap()
}

/// An order of the examples with this id, placed at `created_at`.
fn order(id: &str, created_at: i64) -> Value {
    let mut req = example("requests/order-confirmation/ok-with-remark.json");
    req["order"]["id"] = json!(id);
    req["order"]["created_at"] = json!(created_at);
    req["order"]["paid_at"] = json!(created_at + 60);
    json!({"order": req["order"], "customer": req["customer"]})
}

fn event(id: &str, kind: &str, at: i64, data: Value) -> Value {
    json!({"id": id, "type": kind, "at": at, "data": data})
}

fn message(id: &str, customer: &str) -> Value {
    let mut data = example("requests/greeting/discount.json");
    data["customer"]["id"] = json!(customer);
    event(id, "message.received", now(), data)
}

/// Poll `check` until it answers something, for at most `secs`.
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn processed(s: &Server, shop: &str, id: &str) -> Value {
    wait_for(60, &format!("event {id}"), || {
        let (status, e) = get(s, &format!("/v1/shops/{shop}/events/{id}"), Some(KEY));
        assert_eq!(status, 200, "{e}");
        (e["status"] != "pending").then_some(e)
    })
}

fn actions(s: &Server, shop: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = get(
            s,
            &format!("/v1/shops/{shop}/actions?limit=1000&after={after}"),
            Some(KEY),
        );
        assert_eq!(status, 200, "{page}");
        let items = page["actions"].as_array().unwrap().clone();
        if items.is_empty() {
            return all;
        }
        after = items.last().unwrap()["id"].as_u64().unwrap();
        all.extend(items);
    }
}

fn steps_of(timeline: &Value) -> Vec<String> {
    timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"] == "decision")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn events_run_the_flow_once_per_id_in_order_with_timers_actions_and_a_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shop(&shops, "wf", "");
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let t = now();

    // A batch: an unpaid order whose reminder falls due in 2 s, and a
    // buyer's message; one of them sent twice.
    let unpaid = event("o1-created", "order.created", t, order("O1", t - 7200 + 2));
    let batch = json!([unpaid, message("m1", "buyer-1")]);
    let (status, answer) = post(&s, "/v1/shops/wf/events", Some(KEY), batch.to_string());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["events"][0]["status"], "accepted");
    assert_eq!(answer["events"][1]["status"], "accepted");
    let m1 = processed(&s, "wf", "m1");
    assert_eq!(m1["status"], "processed", "{m1}");
    let steps: Vec<&str> = m1["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["workflow", "greeting", "workflow"], "{m1}");
    // The same id again: the first result, nothing processed twice.
    let (status, again) = post(
        &s,
        "/v1/shops/wf/events",
        Some(KEY),
        message("m1", "buyer-1").to_string(),
    );
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["events"][0]["status"], "duplicate");
    assert_eq!(again["events"][0]["event"]["decisions"], m1["decisions"]);

    // The reminder fires once, not before it is due, and greets nobody
    // twice.
    let reminder = wait_for(30, "the payment reminder", || {
        actions(&s, "wf")
            .into_iter()
            .find(|a| a["subject"] == "order:O1" && a["kind"] == "send-message")
    });
    assert!(
        reminder["event_id"].as_str().unwrap().starts_with("timer-"),
        "{reminder}"
    );
    assert!(
        reminder["at_ms"].as_i64().unwrap() >= (t - 7200 + 2 + 7200) * 1000,
        "fired early: {reminder}"
    );
    let all = actions(&s, "wf");
    let greeted = all.iter().filter(|a| a["event_id"] == "m1").count();
    assert_eq!(greeted, 1, "{all:?}");

    // Paid before the reminder: it is cancelled; the order is confirmed
    // and its buyer's remark passed on.
    let t = now();
    let o2 = order("O2", t);
    for (id, kind) in [("o2-created", "order.created"), ("o2-paid", "order.paid")] {
        let (status, a) = post(
            &s,
            "/v1/shops/wf/events",
            Some(KEY),
            event(id, kind, t, o2.clone()).to_string(),
        );
        assert_eq!(status, 202, "{a}");
    }
    let paid = processed(&s, "wf", "o2-paid");
    assert_eq!(
        paid["timers_cancelled"],
        json!(["payment-reminder"]),
        "{paid}"
    );
    let (_, timeline) = get(&s, "/v1/shops/wf/orders/O2/timeline", Some(KEY));
    assert_eq!(
        steps_of(&timeline),
        ["workflow", "workflow", "order-confirmation", "workflow"],
        "{timeline:#}"
    );
    let timer = timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entry"] == "timer")
        .expect("the reminder timer is on the timeline");
    assert_eq!(timer["pending"], false, "cancelled: {timer}");

    // Out of order: delivered before paid. The revisit is planned on
    // delivery; the late payment confirms nothing (the order is past it).
    let o3 = order("O3", t);
    for (id, kind) in [
        ("o3-delivered", "order.delivered"),
        ("o3-paid", "order.paid"),
    ] {
        post(
            &s,
            "/v1/shops/wf/events",
            Some(KEY),
            event(id, kind, t, o3.clone()).to_string(),
        );
    }
    processed(&s, "wf", "o3-paid");
    let (_, timeline) = get(&s, "/v1/shops/wf/orders/O3/timeline", Some(KEY));
    let steps = steps_of(&timeline);
    assert!(
        steps.contains(&"revisit-planner".to_string()),
        "{timeline:#}"
    );
    assert!(
        !steps.contains(&"order-confirmation".to_string()),
        "{timeline:#}"
    );
    let revisits = timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"] == "revisit")
        .count();
    assert!(revisits >= 1, "{timeline:#}");

    // An approved refund: its approval is emitted and checked on later.
    let mut refund = example("requests/refund-policy/unshipped.json");
    refund["order"]["id"] = json!("O4");
    post(
        &s,
        "/v1/shops/wf/events",
        Some(KEY),
        event("r1", "refund.requested", now(), refund).to_string(),
    );
    let r1 = processed(&s, "wf", "r1");
    assert_eq!(r1["timers_set"][0][0], "refund-check", "{r1}");
    let emitted = actions(&s, "wf")
        .into_iter()
        .find(|a| a["event_id"] == "r1" && a["kind"] == "emit")
        .expect("the approval is emitted");
    assert_eq!(emitted["data"]["kind"], "refund.approve", "{emitted}");
    assert_eq!(emitted["idempotency_key"], "r1/2", "{emitted}");

    // A poller acknowledges an action.
    let id = emitted["id"].as_u64().unwrap();
    let (status, acked) = post(&s, &format!("/v1/shops/wf/actions/{id}/ack"), Some(KEY), "");
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "delivered");
    let (_, pending) = get(
        &s,
        "/v1/shops/wf/actions?status=pending&limit=1000",
        Some(KEY),
    );
    assert!(
        pending["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id)
    );
}

#[test]
fn bad_events_are_refused_naming_the_field_and_nothing_of_the_batch_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shop(&shops, "wf", "");
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let t = now();
    let refuse = |body: String, field: &str| {
        let (status, answer) = post(&s, "/v1/shops/wf/events", Some(KEY), body);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        answer
    };
    refuse(
        event("x1", "order.teleported", t, json!({})).to_string(),
        "type",
    );
    let a = refuse(event("x1", "timer.fired", t, json!({})).to_string(), "type");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kefu itself"),
        "{a}"
    );
    let mut bad = order("O1", t);
    bad["order"]["items"][0]["quantity"] = json!("two");
    let batch = json!([
        event("ok-1", "order.created", t, order("O1", t)),
        event("bad-1", "order.paid", t, bad)
    ]);
    refuse(batch.to_string(), "[1].data.order.items[0].quantity");
    let (status, _) = get(&s, "/v1/shops/wf/events/ok-1", Some(KEY));
    assert_eq!(status, 404, "nothing of a refused batch is kept");
    refuse(
        event("x2", "order.paid", t * 1000, order("O1", t)).to_string(),
        "at",
    );
    let (status, answer) = post(&s, "/v1/shops/wf/events", Some(KEY), "{not json");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let many: Vec<Value> = (0..501).map(|i| message(&format!("m{i}"), "b")).collect();
    let (status, answer) = post(
        &s,
        "/v1/shops/wf/events",
        Some(KEY),
        Value::from(many).to_string(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 500"),
        "{answer}"
    );
    let (status, _) = post(
        &s,
        "/v1/shops/wf/events",
        Some("wrong-key"),
        message("m", "b").to_string(),
    );
    assert_eq!(status, 403);
}

#[test]
fn a_flow_that_loops_or_fails_is_stopped_and_its_event_kept_for_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    for (id, behavior) in [("chain", "chain"), ("fail", "fail")] {
        shop(
            &shops,
            id,
            &format!(
                "[steps.workflow]\nplugin = \"flow.wasm\"\nconfig = {{ behavior = \"{behavior}\" }}\n"
            ),
        );
        std::fs::copy(
            support::wasm::LOOPING_FLOW,
            shops.join(id).join("flow.wasm"),
        )
        .unwrap();
    }
    let s = Server::start(&write_config(dir.path(), &shops, ""));

    post(
        &s,
        "/v1/shops/chain/events",
        Some(KEY),
        message("m1", "b").to_string(),
    );
    let e = processed(&s, "chain", "m1");
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["error"]["code"], "budget_exceeded", "{e}");
    assert!(
        actions(&s, "chain").is_empty(),
        "a failed event does nothing"
    );
    // Its decisions stay in the log, what they planned does not.
    let steps: Vec<&str> = e["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps[..3],
        ["workflow", "revisit-planner", "workflow"],
        "{e}"
    );
    let (_, revisits) = get(&s, "/v1/shops/chain/revisits", Some(KEY));
    assert_eq!(revisits["revisits"], json!([]), "{revisits}");

    post(
        &s,
        "/v1/shops/fail/events",
        Some(KEY),
        message("m1", "b").to_string(),
    );
    let e = processed(&s, "fail", "m1");
    assert_eq!(e["status"], "failed", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot handle"),
        "{e}"
    );
    // Only a failed event is retried.
    let (status, _) = post(&s, "/v1/shops/fail/events/nope/retry", Some(KEY), "");
    assert_eq!(status, 404);

    // Fixed by deploying the bundled flow; the retry processes it.
    let wasm = std::fs::read(support::wasm::WORKFLOW).unwrap();
    let (content_type, body) = kefu_tests::multipart(&[
        ("component", "flow.wasm", "application/wasm", &wasm),
        ("config", "config.json", "application/json", b"{}"),
    ]);
    let (status, deployed) = support::server::try_post(
        &s.url("/v1/shops/fail/steps/workflow/versions"),
        Some(ADMIN),
        &content_type,
        &body,
    )
    .unwrap();
    assert!(status == 200 || status == 201, "{deployed}");
    let (status, retried) = post(&s, "/v1/shops/fail/events/m1/retry", Some(KEY), "");
    assert_eq!(status, 202, "{retried}");
    let e = wait_for(60, "the retried event", || {
        let (_, e) = get(&s, "/v1/shops/fail/events/m1", Some(KEY));
        (e["status"] == "processed").then_some(e)
    });
    assert_eq!(e["attempts"], 2, "{e}");
    let (status, again) = post(&s, "/v1/shops/fail/events/m1/retry", Some(KEY), "");
    assert_eq!(status, 409, "{again}");
}

/// kill -9 at random points while 10,000 events flow (a tenth of them
/// orders whose reminder falls due during the run): after the restarts,
/// every acknowledged event is processed exactly once (one greeting
/// decision, one action), every reminder fired once and not early.
#[test]
fn kill_9_while_events_flow_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shop(&shops, "wf", "");
    let config = write_config(dir.path(), &shops, "");
    let seed = now() as u64;
    println!("seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    const EVENTS: usize = 10_000;
    const BATCH: usize = 100;
    let t0 = now();
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| match i % 10 {
            0 => event(
                &format!("e{i}"),
                "order.created",
                t0,
                order(&format!("O{i}"), t0 - 7200 + 3),
            ),
            _ => message(&format!("e{i}"), &format!("c{i}")),
        })
        .collect();
    let mut acked = vec![false; EVENTS];
    let mut server = Server::start(&config);
    let mut kills = 0;
    let mut batch = 0;
    while batch * BATCH < EVENTS {
        // Now and then, kill -9 in the middle of a batch's processing.
        if kills < 3 && next() % 8 == 0 {
            let url = server.url("/v1/shops/wf/events");
            let body = Value::from(events[batch * BATCH..(batch + 1) * BATCH].to_vec()).to_string();
            let sender = std::thread::spawn(move || {
                support::server::try_post(&url, Some(KEY), "application/json", body.as_bytes())
            });
            std::thread::sleep(Duration::from_millis(next() % 40));
            server.kill();
            kills += 1;
            if let Ok(Some((202, _))) = sender.join() {
                acked[batch * BATCH..(batch + 1) * BATCH].fill(true);
                batch += 1;
            }
            server = Server::start(&config);
            continue;
        }
        let body = Value::from(events[batch * BATCH..(batch + 1) * BATCH].to_vec()).to_string();
        let (status, answer) = post(&server, "/v1/shops/wf/events", Some(KEY), body);
        assert_eq!(status, 202, "{answer}");
        acked[batch * BATCH..(batch + 1) * BATCH].fill(true);
        batch += 1;
    }
    // One more kill while the inbox drains.
    std::thread::sleep(Duration::from_millis(next() % 300));
    server.kill();
    let s = Server::start(&config);
    println!("{kills} kills while sending, one while draining");
    assert!(acked.iter().all(|a| *a));

    // Everything processed: each message once, each order's reminder once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all = actions(&s, "wf");
    while all.len() < EVENTS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        all = actions(&s, "wf");
    }
    let mut per_subject: HashMap<String, usize> = HashMap::new();
    for a in &all {
        *per_subject
            .entry(a["subject"].as_str().unwrap().to_string())
            .or_default() += 1;
        if a["event_id"].as_str().unwrap().starts_with("timer-") {
            assert!(
                a["at_ms"].as_i64().unwrap() >= (t0 + 3) * 1000,
                "fired early: {a}"
            );
        }
    }
    for i in 0..EVENTS {
        let subject = match i % 10 {
            0 => format!("order:O{i}"),
            _ => format!("customer:c{i}"),
        };
        if per_subject.get(&subject) != Some(&1) {
            let (_, e) = get(&s, &format!("/v1/shops/wf/events/e{i}"), Some(KEY));
            let (_, timeline) = get(
                &s,
                &format!(
                    "/v1/shops/wf/{}s/{}/timeline",
                    subject.split(':').next().unwrap(),
                    subject.split(':').nth(1).unwrap()
                ),
                Some(KEY),
            );
            panic!(
                "{subject}: {:?} actions; its event: {e:#}; timeline: {timeline:#}; log: {}",
                per_subject.get(&subject),
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
        }
    }
    assert_eq!(all.len(), EVENTS, "one action per event");
    for i in (1..EVENTS).step_by(37).filter(|i| i % 10 != 0) {
        let (_, e) = get(&s, &format!("/v1/shops/wf/events/e{i}"), Some(KEY));
        assert_eq!(e["status"], "processed", "{e}");
        let (_, d) = get(
            &s,
            &format!("/v1/shops/wf/decisions?step=greeting&customer=c{i}"),
            Some(KEY),
        );
        assert_eq!(d["decisions"].as_array().unwrap().len(), 1, "c{i}: {d}");
    }
}

/// `kefu simulate` runs the example streams through the example shops on
/// a virtual clock: the seed scenarios, step by step.
#[test]
fn simulate_runs_the_example_streams_through_the_example_shops() {
    let simulate = |shop: &str, events: &str| -> Value {
        let out = support::kefu()
            .args(["simulate", "--json", "--shop"])
            .arg(support::example(&format!("shops/{shop}")))
            .arg("--events")
            .arg(support::example(&format!("events/{events}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let entries = |sim: &Value, subject: &str| -> Vec<Value> {
        sim["timelines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["subject"] == subject)
            .unwrap_or_else(|| panic!("no timeline of {subject}: {sim:#}"))["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    let output_of = |entries: &[Value], step: &str| -> Vec<Value> {
        entries
            .iter()
            .filter(|e| e["entry"] == "decision" && e["step"] == step)
            .map(|e| e["output"].clone())
            .collect()
    };

    let tea = simulate("tea-oil", "tea-oil-buyer.jsonl");
    let order = entries(&tea, "order:T20261118007");
    // The reminder: fired by the virtual clock two hours after the order.
    let reminder = order
        .iter()
        .find(|e| e["entry"] == "action" && e["event_id"].as_str().unwrap().starts_with("timer-"))
        .expect("one payment reminder");
    assert_eq!(
        reminder["at_ms"],
        json!((1_794_967_200i64 + 300 + 7200) * 1000),
        "{reminder}"
    );
    let confirmations = output_of(&order, "order-confirmation");
    assert!(
        confirmations[0]["verdict"]["NeedsFix"].is_array(),
        "{confirmations:?}"
    );
    let plan = &output_of(&order, "revisit-planner")[0]["revisits"][0];
    assert_eq!(plan["purpose"], "satisfaction", "{plan}");
    assert_eq!(plan["attempts"]["max_attempts"], 3, "{plan}");
    let delivered = 1_794_967_200i64 + 3 * 86_400;
    let due = plan["due_at"].as_i64().unwrap();
    assert!(
        (delivered + 7 * 86_400 - 86_400..delivered + 8 * 86_400).contains(&due),
        "{plan}"
    );
    let greeting = entries(&tea, "customer:tb_xiaowang");
    assert_eq!(
        output_of(&greeting, "greeting")[0]["matched_keywords"][0],
        "便宜"
    );

    let apparel = simulate("apparel", "apparel-returns.jsonl");
    let outcome = |subject: &str| -> Vec<String> {
        output_of(&entries(&apparel, subject), "refund-policy")
            .iter()
            .map(|o| {
                o["outcome"].as_object().map_or_else(
                    || o["outcome"].to_string(),
                    |m| m.keys().next().unwrap().clone(),
                )
            })
            .collect()
    };
    assert_eq!(outcome("order:A20261116001"), ["\"Approve\""]);
    assert_eq!(outcome("order:A20261116002"), ["Reject"]);
    assert_eq!(outcome("order:A20261116003"), ["RequestEvidence"]);
    let complaint = entries(&apparel, "order:A20261116003");
    assert!(
        complaint.iter().any(|e| e["entry"] == "action"
            && e["kind"] == "hand-off"
            && e["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("C-3001"))),
        "the complaint goes to a person"
    );
    assert!(
        complaint
            .iter()
            .any(|e| e["entry"] == "revisit" && e["purpose"] == "complaint-follow-up"),
        "{complaint:#?}"
    );
    assert!(
        apparel["ran"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "processed"),
        "{apparel:#}"
    );

    // A bad line is named.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "# a comment\n{\"id\": \"x\", \"type\": \"order.nope\", \"at\": 1794967200, \"data\": {}}\n").unwrap();
    let out = support::kefu()
        .args(["simulate", "--shop"])
        .arg(support::example("shops/tea-oil"))
        .arg("--events")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("`type`"), "{err}");
}

/// The shop's `webhook` (the general name of `revisit_webhook`) gets each
/// action, signed, with its idempotency key; delivered, it says so.
#[test]
fn actions_go_to_the_shops_webhook_with_their_idempotency_key() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<(String, bool, Value)>();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(request) = support::hook::read(&stream) else {
                continue;
            };
            let key = request
                .header("idempotency-key")
                .unwrap_or_default()
                .to_string();
            let signed = request
                .header("kefu-signature")
                .is_some_and(|v| v.starts_with("t="));
            let body = request.body;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send((
                key,
                signed,
                serde_json::from_slice(&body).unwrap_or_default(),
            ));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shop(
        &shops,
        "wf",
        &format!("webhook = \"{url}\"\nwebhook_secret_env = \"KEFU_WEBHOOK_SECRET_LAB\"\n"),
    );
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    post(
        &s,
        "/v1/shops/wf/events",
        Some(KEY),
        message("m1", "buyer-1").to_string(),
    );
    let (key, signed, body) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a delivery");
    assert_eq!(key, "m1/1");
    assert!(signed, "signed like every webhook");
    assert_eq!(body["event"], "workflow.action", "{body}");
    assert_eq!(body["kind"], "send-message", "{body}");
    assert_eq!(body["data"]["customer_id"], "buyer-1", "{body}");
    let id = body["action_id"].as_u64().unwrap();
    wait_for(30, "the action marked delivered", || {
        let (_, page) = get(&s, "/v1/shops/wf/actions?status=delivered", Some(KEY));
        page["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id)
            .then_some(())
    });

    // Both names at once is a mistake, named.
    let other = tempfile::tempdir().unwrap();
    let both = other.path().join("shops");
    shop(
        &both,
        "wf",
        &format!(
            "webhook = \"{url}\"\nrevisit_webhook = \"{url}\"\nwebhook_secret_env = \"KEFU_WEBHOOK_SECRET_LAB\"\n"
        ),
    );
    let out = support::kefu()
        .args(["serve", "--strict", "--config"])
        .arg(write_config(other.path(), &both, ""))
        .env("KEFU_KEY_LAB", KEY)
        .env("KEFU_WEBHOOK_SECRET_LAB", "s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both webhook and revisit_webhook"), "{err}");
}

/// A shop over its quota is refused events with the shop's 429 and when
/// to come back, as its step calls are.
#[test]
fn events_over_the_shops_quota_are_refused_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shop(&shops, "wf", "");
    // No call may run at once: every request of the shop is over quota.
    let s = Server::start(&write_config(
        dir.path(),
        &shops,
        "[quotas]\nconcurrent_calls = 0\n",
    ));
    let (status, answer) = post(
        &s,
        "/v1/shops/wf/events",
        Some(KEY),
        message("m1", "b").to_string(),
    );
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "quota_exceeded", "{answer}");
    assert!(answer["error"]["retry_after_secs"].is_number(), "{answer}");
    let (status, _) = get(&s, "/v1/shops/wf/events/m1", Some(KEY));
    assert_eq!(status, 404, "a refused event is not kept");
}
