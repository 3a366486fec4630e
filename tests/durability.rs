//! kill -9 right after a 200 loses nothing that was acknowledged.

mod support;

use std::collections::BTreeSet;
use support::example;
use support::server::{ADMIN, Server, TEA_KEY, get, post, write_config};

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &example("shops"), "");
    let server = Server::start(&config);
    let refund = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let greeting = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();

    // Four writers at once, so flushes are shared between requests.
    let acked: BTreeSet<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (server, refund, greeting) = (&server, &refund, &greeting);
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..50 {
                        let (path, body) = if (i + w) % 2 == 0 {
                            ("/v1/shops/tea-oil/refund-decision", refund)
                        } else {
                            ("/v1/shops/tea-oil/greeting", greeting)
                        };
                        let (status, out) = post(server, path, Some(TEA_KEY), body);
                        assert_eq!(status, 200, "{out}");
                        ids.push(out["decision_id"].as_u64().unwrap());
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), 200);
    server.kill();

    let server = Server::start(&config);
    let (_, log) = get(
        &server,
        "/v1/shops/tea-oil/decisions?limit=1000",
        Some(ADMIN),
    );
    let logged: BTreeSet<u64> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let lost: Vec<_> = acked.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "acknowledged decisions lost after kill -9: {lost:?}"
    );
    let (_, refunds) = get(&server, "/v1/shops/tea-oil/refunds?limit=1000", Some(ADMIN));
    assert_eq!(
        refunds["refunds"].as_array().unwrap().len(),
        100,
        "every acknowledged refund is kept"
    );
}
