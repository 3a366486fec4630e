//! Storage faults injected in process (#30): the app on a store whose
//! writes, flushes or reads of one kind of record fail on purpose
//! (`kefu::storage_types::Faults`), for every kind the server keeps —
//! decisions, plugin state, revisits, versions, the webhook outbox. Each
//! fault answers a clear error in the JSON envelope, writes nothing half,
//! leaves the other kinds working, and once disarmed the server goes on
//! by itself with nothing acknowledged lost.

mod support;

use axum::http::Method;
use kefu::storage_types::{Faults, Layered, Op, Record};
use kefu_tests::multipart;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::inproc::{ADMIN, InProc, KEY, released};

/// Shop `tea`: the bundled plugins, but a refund policy that counts its
/// calls in its state (the hostile guest's `counter`), and revisits due at
/// once (an unpaid order's reminder, any hour) sent to a closed port.
fn write_shop(root: &std::path::Path) {
    let dir = root.join("shops").join("tea");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("shop.toml"),
        format!(
            "name = \"tea\"\napi_key_env = \"KEY_TEA\"\nrevisit_webhook = \"http://127.0.0.1:9/hook\"\nwebhook_secret_env = \"HOOK\"\n\n[steps.refund-policy]\nplugin = {:?}\nconfig = {{ behavior = \"counter\" }}\n\n[steps.revisit-planner]\nconfig = {{ unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }}\n",
            support::wasm::HOSTILE
        ),
    )
    .unwrap();
}

struct Drill {
    api: InProc,
    faults: Arc<Layered<Faults>>,
    _root: tempfile::TempDir,
}

impl Drill {
    async fn open() -> Drill {
        let root = tempfile::tempdir().unwrap();
        write_shop(root.path());
        let data = root.path().join("data");
        released(&data).await;
        let store = kefu::SledStorage::open(&data).unwrap();
        let faults = Arc::new(Faults::new(Arc::new(store)));
        let api = InProc::open_on(root.path(), Some(faults.clone())).await;
        api.app.set_ready();
        Drill {
            api,
            faults,
            _root: root,
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.api
            .call(
                Method::POST,
                path,
                KEY,
                "application/json",
                body.to_string().into_bytes(),
            )
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.api.get(path).await
    }

    async fn greeting(&self) -> (u16, Value) {
        self.post(
            "/v1/shops/tea/greeting",
            &example("greeting/first-visit.json"),
        )
        .await
    }

    async fn decisions(&self) -> Vec<Value> {
        let (status, out) = self.get("/v1/shops/tea/decisions?limit=1000").await;
        assert_eq!(status, 200, "{out}");
        out["decisions"].as_array().unwrap().clone()
    }

    /// The refund policy's answer: its call count, or the error.
    async fn count(&self) -> (u16, Value) {
        let (status, out) = self
            .post(
                "/v1/shops/tea/refund-decision",
                &example("refund-policy/unshipped.json"),
            )
            .await;
        (
            status,
            if status == 200 {
                out["output"]["message"].clone()
            } else {
                out
            },
        )
    }

    /// Wait until a greeting is answered again (the probe finds the way
    /// back within a few seconds of the fault's end).
    async fn serves_again(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, out) = self.greeting().await;
            if status == 200 {
                return out;
            }
            assert_eq!(status, 503, "{out}");
            assert!(Instant::now() < deadline, "never served again: {out}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn example(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(support::example(&format!("requests/{name}"))).unwrap())
        .unwrap()
}

/// A 503 `storage_error` (or `host_error`, for a plugin's state) whose
/// message names the fault.
fn refused(answer: &(u16, Value), code: &str, what: &str) {
    let (status, out) = answer;
    assert_eq!(*status, 503, "{out}");
    assert_eq!(out["error"]["code"], code, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains(what), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_a_failed_write_records_nothing_a_failed_flush_is_said_a_failed_read_stops_only_reads()
 {
    let drill = Drill::open().await;
    let first = drill.greeting().await;
    assert_eq!(first.0, 200, "{}", first.1);

    // The write fails: 503 naming it, nothing logged; storage counts as
    // failing (readiness) until it can write again.
    drill.faults.arm(Record::Decision, Op::Write);
    refused(
        &drill.greeting().await,
        "storage_error",
        "write of decision failed",
    );
    let (ready, text) = drill.get("/readyz").await;
    assert_eq!(ready, 503, "{text}");
    assert!(text.to_string().contains("storage failing"), "{text}");
    // Reads answer meanwhile.
    assert_eq!(drill.decisions().await.len(), 1);
    drill.faults.clear();
    drill.serves_again().await;
    assert_eq!(drill.get("/readyz").await.0, 200);
    let logged: Vec<u64> = drill
        .decisions()
        .await
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(logged.len(), 2, "the refused one is not in the log");
    assert!(logged.contains(&first.1["decision_id"].as_u64().unwrap()));

    // The flush fails: the answer says the decision was not made durable
    // and may appear (never a 200 for it).
    drill.faults.arm(Record::Store, Op::Flush);
    refused(&drill.greeting().await, "storage_error", "not made durable");
    drill.faults.clear();
    let after = drill.serves_again().await;
    assert!(after["decision_id"].as_u64().is_some());

    // Reads fail: the log's API says so; decisions are still made.
    drill.faults.arm(Record::Decision, Op::Read);
    refused(
        &drill.get("/v1/shops/tea/decisions").await,
        "storage_error",
        "read of decision failed",
    );
    let (status, out) = drill.greeting().await;
    assert_eq!(status, 200, "{out}");
    drill.faults.clear();
    assert!(drill.decisions().await.len() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_state_a_failed_read_stops_the_call_instead_of_reading_as_absent() {
    let drill = Drill::open().await;
    assert_eq!(drill.count().await, (200, json!("1")));
    assert_eq!(drill.count().await, (200, json!("2")));

    // A read the store cannot answer: the call stops (503), where a read
    // taken for "absent" would have counted from 1 again.
    drill.faults.arm(Record::State, Op::Read);
    refused(
        &drill.count().await,
        "host_error",
        "state could not be read",
    );
    // A write that fails: the plugin is told (and here gives up).
    drill.faults.clear();
    drill.faults.arm(Record::State, Op::Write);
    let (status, out) = drill.count().await;
    assert_ne!(status, 200, "{out}");
    assert!(out.to_string().contains("write of state failed"), "{out}");
    // Other steps are not held up by the plugin state's trouble.
    assert_eq!(drill.greeting().await.0, 200);

    // Disarmed: the count goes on from what was written, nothing half.
    drill.faults.clear();
    assert_eq!(drill.count().await, (200, json!("3")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisits_a_failed_write_plans_nothing_and_a_failed_read_is_said() {
    let drill = Drill::open().await;
    let delivered = example("revisit-planner/delivered.json");
    let plan = "/v1/shops/tea/revisit-plan";
    drill.faults.arm(Record::Revisit, Op::Write);
    refused(
        &drill.post(plan, &delivered).await,
        "storage_error",
        "write of revisit failed",
    );
    drill.faults.clear();
    drill.serves_again().await;
    let (status, out) = drill.get("/v1/shops/tea/revisits").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["revisits"].as_array().unwrap().len(), 0, "{out}");
    let (status, planned) = drill.post(plan, &delivered).await;
    assert_eq!(status, 200, "{planned}");

    drill.faults.arm(Record::Revisit, Op::Read);
    refused(
        &drill.get("/v1/shops/tea/revisits").await,
        "storage_error",
        "read of revisit failed",
    );
    drill.faults.clear();
    let (_, out) = drill.get("/v1/shops/tea/revisits").await;
    assert!(!out["revisits"].as_array().unwrap().is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_a_failed_deploy_changes_nothing_and_the_old_version_serves() {
    let drill = Drill::open().await;
    let deploy = || async {
        let (ct, body) = multipart(&[(
            "config",
            "greeting.json",
            "application/json",
            br#"{"shop_name":"tea v2"}"#,
        )]);
        drill
            .api
            .call(
                Method::POST,
                "/v1/shops/tea/steps/greeting/versions",
                ADMIN,
                &ct,
                body,
            )
            .await
    };
    drill.faults.arm(Record::Version, Op::Write);
    refused(&deploy().await, "storage_error", "write of version failed");
    drill.faults.clear();
    let (status, out) = drill.greeting().await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["plugin"]["version"], 1, "the old version serves");

    drill.faults.arm(Record::Version, Op::Read);
    refused(
        &drill.get("/v1/shops/tea/steps/greeting/versions").await,
        "storage_error",
        "read of version failed",
    );
    drill.faults.clear();
    let (status, out) = drill.get("/v1/shops/tea/steps/greeting/versions").await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["versions"].as_array().unwrap().len(), 1, "{out}");
    let (status, out) = deploy().await;
    assert!(status == 200 || status == 201, "{out}");
    assert_eq!(drill.greeting().await.1["plugin"]["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_a_revisit_that_cannot_queue_its_webhook_stays_planned_and_fires_later() {
    let drill = Drill::open().await;
    let _background = drill.api.app.start_background().unwrap();
    drill.faults.arm(Record::Delivery, Op::Write);
    let mut unpaid = example("revisit-planner/unpaid.json");
    unpaid["trigger"]["Unpaid"]["created_at"] = json!(chrono::Utc::now().timestamp() - 60);
    let (status, out) = drill.post("/v1/shops/tea/revisit-plan", &unpaid).await;
    assert_eq!(status, 200, "{out}");
    // Due at once, but its webhook cannot be queued: it stays planned,
    // with nothing half-queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while drill.faults.failed() == 0 {
        assert!(Instant::now() < deadline, "the scheduler never tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, out) = drill.get("/v1/shops/tea/revisits?status=planned").await;
    assert_eq!(out["revisits"].as_array().unwrap().len(), 1, "{out}");
    let (_, out) = drill.get("/v1/shops/tea/webhooks").await;
    assert_eq!(out["webhooks"].as_array().map(Vec::len), Some(0), "{out}");
    drill.faults.arm(Record::Delivery, Op::Read);
    refused(
        &drill.get("/v1/shops/tea/webhooks").await,
        "storage_error",
        "read of delivery failed",
    );

    // Disarmed: it fires, once, and its webhook is queued.
    drill.faults.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out) = drill.get("/v1/shops/tea/webhooks").await;
        if out["webhooks"].as_array().is_some_and(|d| d.len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "never fired: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, out) = drill.get("/v1/shops/tea/revisits?status=due").await;
    assert_eq!(out["revisits"].as_array().unwrap().len(), 1, "{out}");
}
