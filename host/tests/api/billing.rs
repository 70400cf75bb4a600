//! The ledger: holds, settlement, refunds, recovery, money in. Every test
//! ends on the ledger equation: what left the balance equals what the logs
//! charged.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// A prompt long enough that its counted tokens exceed what the mock
/// upstream reports (11), so a hold always covers the prompt.
fn metered_body(stream: bool) -> Value {
    json!({
        "model": "metered",
        "messages": [{"role": "user", "content": "Please say hello to the whole wide world, politely and warmly."}],
        "max_tokens": MOCK_COMPLETION_TOKENS,
        "stream": stream,
    })
}

/// One unit per input token, two per output token.
fn metered_prices() -> Value {
    json!({"models": {"metered": {"model_ratio": 1.0, "completion_ratio": 2.0}}, "allow_unpriced": true})
}

const METERED_COST: i64 = (MOCK_PROMPT_TOKENS + 2 * MOCK_COMPLETION_TOKENS) as i64;

async fn metered_app() -> (TestApp, MockUpstream) {
    let app = spawn_app().await;
    let mock = MockUpstream::start("k").await;
    app.channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered", "m"]}))
        .await;
    app.set_prices(metered_prices()).await;
    (app, mock)
}

fn hold_for_metered() -> i64 {
    let prompt = transit::billing::tokens::count_chat("metered", &metered_body(false)) as i64;
    prompt + 2 * MOCK_COMPLETION_TOKENS as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_requests_never_overdraw() {
    let (app, mock) = metered_app().await;
    let hold = hold_for_metered();
    assert!(hold >= METERED_COST, "the hold covers the cost");
    let initial = hold * 100;
    let (user, key) = app.user_with_key(initial).await;

    let mut calls = Vec::new();
    for i in 0..1000 {
        let client = app.client.clone();
        let url = app.url("/v1/chat/completions");
        let key = key.clone();
        calls.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&metered_body(i % 2 == 0))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            (status, body)
        }));
    }
    let mut served = 0;
    let mut refused = 0;
    for c in calls {
        match c.await.unwrap() {
            (200, _) => served += 1,
            (403, _) => refused += 1,
            (other, body) => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(served + refused, 1000);
    // At least what the holds allow at once, at most what the real cost allows.
    let (lo, hi) = (initial / hold, initial / METERED_COST);
    assert!(
        (lo..=hi).contains(&served),
        "served {served}, expected {lo}..={hi}"
    );
    assert_eq!(mock.requests() as i64, served);

    let (quota, charged, _) = app.ledger(user).await;
    assert!(quota >= 0, "balance went below zero: {quota}");
    assert_eq!(initial - quota, charged, "the ledger equation");
    assert_eq!(charged, served * METERED_COST);
    assert_eq!(app.open_holds().await, 0);
    println!(
        "concurrency: 1000 requests, {served} served, {refused} refused, {charged} charged, {quota} left"
    );
}

#[tokio::test]
async fn upstream_failure_refunds_the_whole_hold_once() {
    let (app, mock) = metered_app().await;
    mock.set(Behavior::ServerError);
    let (user, key) = app.user_with_key(10_000).await;
    for stream in [false, true] {
        let r = app.chat(&key, metered_body(stream)).await;
        assert_eq!(r.status(), 500);
    }
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!((quota, charged), (10_000, 0));
    let logs = app.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l["kind"] == "error" && l["quota"] == 0));
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn plain_and_streamed_calls_are_charged_at_their_price() {
    let (app, _mock) = metered_app().await;
    let (user, key) = app.user_with_key(10_000).await;
    assert_eq!(app.chat(&key, metered_body(false)).await.status(), 200);
    let data = sse_data(app.chat(&key, metered_body(true)).await).await;
    assert_eq!(chunk_text(&data), MOCK_REPLY);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * METERED_COST);
    assert_eq!(10_000 - quota, charged);
    let logs = app.logs().await;
    let price: Value = serde_json::from_str(logs[0]["price"].as_str().unwrap()).unwrap();
    assert_eq!(price["completion_ratio"], 2.0);
    assert_eq!(price["quota_per_usd"], 500_000);
}

/// A plain call sent in the background to a slow upstream (it answers
/// after 600 ms), once the upstream has it and before it answers.
async fn slow_call_at_the_upstream(
    app: &TestApp,
    mock: &MockUpstream,
    key: String,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    mock.set(Behavior::Slow);
    let url = app.url("/v1/chat/completions");
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&metered_body(false))
            .send()
            .await
    });
    for _ in 0..100 {
        if mock.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.requests(), 1);
    assert!(!call.is_finished(), "the slow answer came early");
    call
}

/// A client that hangs up while the upstream works on a plain call pays
/// for the prompt (the upstream bills it), not for the answer it never got.
#[tokio::test]
async fn a_call_abandoned_while_the_upstream_works_is_charged_its_prompt() {
    let (app, mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;
    // Hang up once the upstream has the request.
    let call = slow_call_at_the_upstream(&app, &mock, key).await;
    call.abort();
    let logs = app.wait_logs(1).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(
        log["content"],
        "client disconnected before the answer: prompt billed"
    );
    let prompt = transit::billing::tokens::count_chat("metered", &metered_body(false)) as i64;
    assert_eq!(log["prompt_tokens"], prompt);
    assert_eq!(log["completion_tokens"], 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert!(charged > 0, "the prompt was not billed");
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

/// A plain call still in flight when the shutdown's grace period ends is
/// answered 503 (`shutting_down`: send it again), and billed as the
/// gateway's cut, for the prompt the upstream already has. The cut reaches
/// it through its connection's own token, a child of the gateway's.
#[tokio::test]
async fn a_call_in_flight_when_the_shutdown_cuts_is_answered_503() {
    let (app, mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;
    let call = slow_call_at_the_upstream(&app, &mock, key).await;
    app.app.state.shutdown.cancel();
    let r = call.await.unwrap().unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    // The gateway is cut for good now, its admin API too: the ledger is
    // read from the database.
    let (quota, charged, _) = app.ledger(user).await;
    let db = &app.app.state.db;
    let logs: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(
        db.sql("SELECT content FROM logs WHERE user_id = ?")
            .into_owned(),
    ))
    .bind(user)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        logs,
        [("the gateway shut down before the answer: prompt billed".to_owned(),)]
    );
    assert!(charged > 0, "the prompt was not billed");
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn cut_and_abandoned_streams_are_charged_for_what_was_delivered() {
    let (app, mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;

    mock.set(Behavior::CutMidStream);
    let data = sse_data(app.chat(&key, metered_body(true)).await).await;
    let delivered = chunk_text(&data);
    assert!(!delivered.is_empty() && delivered.len() < MOCK_REPLY.len());

    // The client reads the first chunks of a slow stream and hangs up.
    mock.set(Behavior::SlowStream);
    let mut r = app.chat(&key, metered_body(true)).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(r.chunk().await.unwrap().unwrap());
    }
    drop(r);
    // The gateway notices, stops reading the upstream and settles.
    let logs = app.wait_logs(2).await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    let abandoned = &logs[0];
    assert_eq!(abandoned["content"], "client disconnected");
    let out = abandoned["completion_tokens"].as_i64().unwrap();
    let full = transit::billing::tokens::count("metered", &MOCK_REPLY.repeat(10)) as i64;
    assert!(
        out > 0 && out < full,
        "billed {out} of {full} output tokens"
    );
    let cut = &logs[1];
    assert_eq!(cut["content"], "upstream failed mid-stream");
    assert_eq!(
        cut["completion_tokens"],
        transit::billing::tokens::count("metered", &delivered) as i64
    );

    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

/// A prompt longer than what is counted ahead is held on an estimate, and
/// billed on its whole count when the upstream reports no usage.
#[tokio::test]
async fn a_long_prompt_is_billed_whole_when_the_upstream_reports_none() {
    let (app, mock) = metered_app().await;
    let (user, key) = app.user_with_key(10_000_000).await;
    // Words first, digits after: an estimate at the words' rate is wrong.
    let head = "the quick brown fox jumps over the lazy dog ".repeat(1000);
    let tail = "31415926535 27182818284 ".repeat(4000);
    let body = json!({
        "model": "metered",
        "messages": [{"role": "user", "content": format!("{head}{tail}")}],
        "max_tokens": MOCK_COMPLETION_TOKENS,
        "stream": true,
    });
    let (estimate, exact) = transit::billing::tokens::estimate_chat("metered", &body);
    let whole = transit::billing::tokens::count_chat("metered", &body);
    assert!(!exact && estimate != whole, "{estimate} {whole}");

    mock.set(Behavior::CutMidStream);
    sse_data(app.chat(&key, body).await).await;
    let logs = app.wait_logs(1).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["content"], "upstream failed mid-stream");
    assert_eq!(logs[0]["prompt_tokens"], whole as i64);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(10_000_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

#[tokio::test]
async fn a_hold_that_does_not_fit_is_refused_and_touches_nothing() {
    let (app, mock) = metered_app().await;
    let (user, key) = app.user_with_key(hold_for_metered() - 1).await;
    let r = app.chat(&key, metered_body(false)).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "insufficient_quota");
    assert_eq!(mock.requests(), 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!((quota, charged), (hold_for_metered() - 1, 0));

    // A limited token is held to its own quota even when the user is rich.
    let (rich, _) = app.user_with_key(1_000_000).await;
    let capped = app
        .key_for(
            rich,
            json!({"remain_quota": hold_for_metered() - 1, "unlimited_quota": false}),
        )
        .await;
    assert_eq!(app.chat(&capped, metered_body(false)).await.status(), 403);
    let exact = app
        .key_for(
            rich,
            json!({"remain_quota": hold_for_metered(), "unlimited_quota": false}),
        )
        .await;
    assert_eq!(app.chat(&exact, metered_body(false)).await.status(), 200);
    app.settled().await;
    let tokens: Value = app
        .admin_json(&format!("/admin/tokens?user_id={rich}"))
        .await;
    let last = tokens["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["remain_quota"], hold_for_metered() - METERED_COST);
    assert_eq!(last["used_quota"], METERED_COST);
}

#[tokio::test]
async fn settling_twice_changes_nothing() {
    let (app, _mock) = metered_app().await;
    let (user, key) = app.user_with_key(10_000).await;
    assert_eq!(app.chat(&key, metered_body(false)).await.status(), 200);
    let before = app.ledger(user).await;
    // Replay a settlement for a hold that no longer exists.
    let replay = transit::store::Settlement {
        hold_id: "no-such-hold".into(),
        lease_expired_by: None,
        cost: 10,
        counts_as_request: 1,
        log: transit::store::ConsumeLog {
            kind: "consume",
            user_id: user,
            ..Default::default()
        },
    };
    assert_eq!(app.app.state.db.settle_hold(&replay).await.unwrap(), None);
    assert_eq!(app.ledger(user).await, before);
}

#[tokio::test]
async fn price_edits_apply_to_the_next_request() {
    let (app, _mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;
    assert_eq!(app.chat(&key, metered_body(false)).await.status(), 200);
    app.set_prices(json!({"models": {"metered": {"model_ratio": 3.0, "completion_ratio": 2.0}}}))
        .await;
    assert_eq!(app.chat(&key, metered_body(false)).await.status(), 200);
    let logs = app.logs().await;
    assert_eq!(logs[1]["quota"], METERED_COST);
    assert_eq!(logs[0]["quota"], 3 * METERED_COST);
    // Unpriced models are now refused.
    let r = app.chat(&key, chat_body("m", false)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_priced"
    );
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(100_000 - quota, charged);

    let shown: Value = app.admin_json("/admin/pricing").await;
    assert_eq!(shown["pricing"]["models"]["metered"]["model_ratio"], 3.0);
    assert_eq!(shown["quota_per_usd"], 500_000);
    let bad = app
        .client
        .put(app.url("/admin/pricing"))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .json(&json!({"models": {"x": {"model_ratio": -2}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn recharge_as_the_seed_sends_it() {
    let app = spawn_app().await;
    let (user, _) = app.user_with_key(0).await;
    let r = app
        .admin_post(
            "/admin/recharge",
            json!({"user_id": user.to_string(), "amount": 100.00, "remark": "手动充值"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let topup: Value = r.json().await.unwrap();
    assert_eq!(topup["quota"], 50_000_000);
    assert_eq!(topup["amount"], "100.00");
    assert_eq!(app.user(user).await["quota"], 50_000_000);
    let (_, _, topped) = app.ledger(user).await;
    assert_eq!(topped, 50_000_000);
    assert_eq!(
        app.admin_post("/admin/recharge", json!({"user_id": 99999, "amount": 1}))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.admin_post("/admin/recharge", json!({"user_id": user, "amount": -1}))
            .await
            .status(),
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_is_redeemed_exactly_once() {
    let app = spawn_app().await;
    let r = app
        .admin_post(
            "/admin/redemptions",
            json!({"name": "promo", "quota": 7_000, "count": 3}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let codes: Value = r.json().await.unwrap();
    let code = codes["data"][0]["code"].as_str().unwrap().to_owned();
    let (alice, alice_key) = app.user_with_key(0).await;
    let (bob, bob_key) = app.user_with_key(0).await;

    // Two users race for the same code, many times over.
    let redeem = |key: String, code: String| {
        let client = app.client.clone();
        let url = app.url("/api/user/topup");
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"key": code}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut attempts = Vec::new();
    for i in 0..20 {
        let key = if i % 2 == 0 {
            alice_key.clone()
        } else {
            bob_key.clone()
        };
        attempts.push(tokio::spawn(redeem(key, code.clone())));
    }
    let mut ok = 0;
    for a in attempts {
        match a.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    let total = app.user(alice).await["quota"].as_i64().unwrap()
        + app.user(bob).await["quota"].as_i64().unwrap();
    assert_eq!(total, 7_000);

    // A disabled code cannot be redeemed; an unknown one neither.
    let second = codes["data"][1]["id"].as_i64().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/admin/redemptions/{second}")))
        .header("X-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let disabled = codes["data"][1]["code"].as_str().unwrap().to_owned();
    assert_eq!(redeem(alice_key.clone(), disabled).await, 400);
    assert_eq!(redeem(alice_key.clone(), "nope".into()).await, 400);
    let third = codes["data"][2]["code"].as_str().unwrap().to_owned();
    assert_eq!(redeem(alice_key, third).await, 200);
    let listed: Value = app.admin_json("/admin/redemptions").await;
    let statuses: Vec<i64> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![3, 2, 3]);
}

#[tokio::test]
async fn usage_summaries_by_day_and_model() {
    let (app, _mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;
    for _ in 0..3 {
        assert_eq!(app.chat(&key, metered_body(false)).await.status(), 200);
    }
    app.settled().await;
    let v: Value = app
        .admin_json(&format!("/admin/users/{user}/usage?days=7"))
        .await;
    let lines = v["data"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["model"], "metered");
    assert_eq!(lines[0]["requests"], 3);
    assert_eq!(lines[0]["quota"], 3 * METERED_COST);
    assert_eq!(lines[0]["day"].as_i64().unwrap() % 86400, 0);
    let tokens: Value = app
        .admin_json(&format!("/admin/tokens?user_id={user}"))
        .await;
    let token = tokens["data"][0]["id"].as_i64().unwrap();
    let v: Value = app
        .admin_json(&format!("/admin/tokens/{token}/usage"))
        .await;
    assert_eq!(v["data"][0]["prompt_tokens"], 3 * MOCK_PROMPT_TOKENS);
}

/// SIGKILL a gateway process while streams are open; the restarted process
/// settles every hold it left, and the ledger still balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_left_by_a_killed_process_are_settled_after_restart() {
    // The set-up instance stays up (its SQLite file lives in its data
    // directory) but sweeps too rarely to matter here.
    let setup = spawn_app_with(|c| c.billing.hold_lease_secs = 600).await;
    let mock = MockUpstream::start("k").await;
    setup
        .channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}))
        .await;
    setup.set_prices(metered_prices()).await;
    mock.set(Behavior::SlowStream);
    let (user, key) = setup.user_with_key(100_000).await;
    let database_url = setup.database_url.clone();

    let data = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::start(&database_url, data.path()).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut r = gateway
            .client
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&metered_body(true))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.chunk().await.unwrap().unwrap();
        streams.push(r);
    }
    let probe = spawn_app_on(tempfile::tempdir().unwrap(), database_url.clone(), |c| {
        c.billing.hold_lease_secs = 2;
    })
    .await;
    assert_eq!(probe.open_holds().await, 4, "the streams hold quota");
    let (held_quota, _, _) = probe.ledger(user).await;
    assert!(held_quota < 100_000);
    drop(probe);

    gateway.kill().await;
    drop(streams);

    let mut restarted = GatewayProcess::start(&database_url, data.path()).await;
    let app = spawn_app_on(tempfile::tempdir().unwrap(), database_url, |c| {
        // Only the restarted process sweeps: this instance's sweep runs late.
        c.billing.hold_lease_secs = 600;
    })
    .await;
    let left = app.wait_holds_returned().await;
    assert_eq!(left, 0, "holds were not recovered");
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(
        100_000 - quota,
        charged,
        "the ledger equation after a crash"
    );
    let logs = app.logs().await;
    assert_eq!(logs.len(), 4);
    assert!(
        logs.iter()
            .all(|l| l["content"].as_str().unwrap().starts_with("recovered"))
    );
    let prompt = transit::billing::tokens::count_chat("metered", &metered_body(true)) as i64;
    assert_eq!(charged, 4 * prompt, "each interrupted call pays its prompt");
    println!("crash: 4 streams killed, {charged} charged (prompts), {quota} left, 0 holds open");
    restarted.kill().await;
    drop(setup);
}

/// The quota a user's open holds (and credit lines) keep aside.
async fn held(app: &TestApp, user_id: i64) -> i64 {
    let db = &app.app.state.db;
    // Summed here: SUM's type differs between the databases.
    let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(
        db.sql("SELECT amount FROM holds WHERE user_id = ?")
            .into_owned(),
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter().map(|(a,)| a).sum()
}

/// With credit lines on, a key's first call reserves a line in one hold and
/// the next calls draw on it in memory; the charges land in the ledger and
/// the rest of the line comes back when it is closed.
#[tokio::test]
async fn calls_drawn_on_a_credit_line_are_billed_exactly() {
    let app = spawn_app_with(|c| c.billing.credit_line_calls = 10).await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}),
    )
    .await;
    app.set_prices(metered_prices()).await;
    let (user, key) = app.user_with_key(100_000).await;

    for i in 0..6 {
        let r = app.chat(&key, metered_body(i % 2 == 1)).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    app.settled().await;
    // One hold for the whole line, sized for ten calls, drawn on six times.
    assert_eq!(app.open_holds().await, 1);
    let line = 10 * hold_for_metered();
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 6 * METERED_COST);
    assert_eq!(held(&app, user).await, line - charged);
    assert_eq!(quota + held(&app, user).await + charged, 100_000);
    let logs = app.logs().await;
    assert_eq!(logs.len(), 6);
    assert!(logs.iter().all(|l| l["quota"] == METERED_COST));
    let v = app.user(user).await;
    assert_eq!(v["request_count"], 6);

    // Closing the line gives the rest back.
    assert_eq!(app.app.state.billing.release_idle_lines(Duration::ZERO), 1);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(app.open_holds().await, 0);
    assert_eq!(100_000 - quota, charged);

    // A failed call drawn on a new line costs nothing.
    mock.set(Behavior::ServerError);
    let r = app.chat(&key, metered_body(false)).await;
    assert!(r.status().is_server_error());
    app.app.state.billing.release_idle_lines(Duration::ZERO);
    let (quota_after, charged_after, _) = app.ledger(user).await;
    assert_eq!((quota_after, charged_after), (quota, charged));
}

/// A balance too small for a line falls back to a hold per call, and still
/// never overdraws.
#[tokio::test]
async fn without_room_for_a_line_each_call_holds_its_own() {
    let app = spawn_app_with(|c| c.billing.credit_line_calls = 10).await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}),
    )
    .await;
    app.set_prices(metered_prices()).await;
    let balance = 3 * hold_for_metered();
    let (user, key) = app.user_with_key(balance).await;
    let mut served = 0;
    for _ in 0..6 {
        let r = app.chat(&key, metered_body(false)).await;
        if r.status() == 200 {
            served += 1;
        } else {
            assert_eq!(r.status(), 403);
        }
        r.bytes().await.unwrap();
    }
    assert!(served >= 3, "three calls fit the balance");
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(app.open_holds().await, 0);
    assert_eq!(charged, served * METERED_COST);
    assert_eq!(balance - quota, charged);
    assert!(quota >= 0);
}

/// A process killed while it holds a credit line: the charges it wrote
/// stay, and the rest of its line is returned by the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_line_of_a_killed_process_is_returned() {
    let setup = spawn_app_with(|c| c.billing.hold_lease_secs = 600).await;
    let mock = MockUpstream::start("k").await;
    setup
        .channel(json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}))
        .await;
    setup.set_prices(metered_prices()).await;
    let (user, key) = setup.user_with_key(100_000).await;
    let database_url = setup.database_url.clone();

    let data = tempfile::tempdir().unwrap();
    let lines = [("TRANSIT_BILLING__CREDIT_LINE_CALLS", "20".to_owned())];
    let mut gateway = GatewayProcess::start_with(&database_url, data.path(), &lines).await;
    for _ in 0..3 {
        let r = gateway
            .client
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&metered_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The three charges are written (batched, but promptly).
    let mut written = 0;
    for _ in 0..100 {
        written = setup.logs().await.len();
        if written == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(written, 3);
    assert_eq!(setup.open_holds().await, 1, "the line is open");
    gateway.kill().await;

    let app = spawn_app_on(tempfile::tempdir().unwrap(), database_url, |c| {
        c.billing.hold_lease_secs = 2;
    })
    .await;
    let left = app.wait_holds_returned().await;
    assert_eq!(left, 0, "the line was not returned");
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 3 * METERED_COST);
    assert_eq!(
        100_000 - quota,
        charged,
        "the ledger equation after a crash"
    );
    assert_eq!(app.logs().await.len(), 3, "returning a line logs no call");
    drop(setup);
}

/// A call drawn on a credit line that costs more than its estimate (the
/// upstream counted more prompt tokens than the gateway did) pays the whole
/// cost: the line gives what it can, the balance the rest.
#[tokio::test]
async fn an_overrun_beyond_the_line_is_charged_to_the_balance() {
    let app = spawn_app_with(|c| c.billing.credit_line_calls = 1).await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}),
    )
    .await;
    app.set_prices(metered_prices()).await;
    let (user, key) = app.user_with_key(100_000).await;
    let body = json!({
        "model": "metered",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": MOCK_COMPLETION_TOKENS,
    });
    let estimate = transit::billing::tokens::count_chat("metered", &body) as i64
        + 2 * MOCK_COMPLETION_TOKENS as i64;
    assert!(
        estimate < METERED_COST,
        "the upstream reports more than the estimate"
    );
    let r = app.chat(&key, body).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    app.app.state.billing.release_idle_lines(Duration::ZERO);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, METERED_COST);
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.open_holds().await, 0);
}

/// The open hold of a user's credit line: (id, amount).
async fn line_hold(app: &TestApp, user_id: i64) -> (String, i64) {
    let db = &app.app.state.db;
    sqlx::query_as(sqlx::AssertSqlSafe(
        db.sql("SELECT id, amount FROM holds WHERE user_id = ?")
            .into_owned(),
    ))
    .bind(user_id)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn credit_line_app(calls: u64) -> (TestApp, MockUpstream) {
    let app = spawn_app_with(move |c| c.billing.credit_line_calls = calls).await;
    let mock = MockUpstream::start("k").await;
    app.channel(
        json!({"name": "c", "secret_key": "k", "base_url": mock.base_url(), "models": ["metered"]}),
    )
    .await;
    app.set_prices(metered_prices()).await;
    (app, mock)
}

/// A credit-line app whose user (holding `quota`) made one call, so its key
/// has an open line: (app, mock, user, key, line id, what the line holds).
async fn with_open_line(
    calls: u64,
    quota: i64,
) -> (TestApp, MockUpstream, i64, String, String, i64) {
    let (app, mock) = credit_line_app(calls).await;
    let (user, key) = app.user_with_key(quota).await;
    let r = app.chat(&key, metered_body(false)).await;
    assert_eq!(r.status(), 200);
    app.settled().await;
    let (line, left) = line_hold(&app, user).await;
    (app, mock, user, key, line, left)
}

/// A charge of `cost` on credit line `line`, `from_line` of it drawn from
/// the line; its log row's content is its id.
fn line_charge(
    id: &str,
    user: i64,
    line: &str,
    from_line: i64,
    cost: i64,
) -> transit::store::LedgerEntry {
    transit::store::LedgerEntry::LineCharge(transit::store::LineCharge {
        id: id.to_owned(),
        line: line.to_owned(),
        from_line,
        cost,
        counts_as_request: 1,
        log: transit::store::ConsumeLog {
            kind: "consume",
            user_id: user,
            model: "metered".into(),
            content: id.to_owned(),
            ..Default::default()
        },
    })
}

/// A line charge written twice (the writer retrying after a commit whose
/// outcome it could not see) is applied once.
#[tokio::test]
async fn a_line_charge_written_twice_is_applied_once() {
    let (app, _mock, user, _key, line, left) = with_open_line(10, 100_000).await;
    let (_, charged_before, _) = app.ledger(user).await;
    let logs_before = app.logs().await.len();

    let charge = line_charge("charge-once", user, &line, 7, 7);
    let db = &app.app.state.db;
    db.write_entry(&charge).await.unwrap();
    db.write_ledger(std::slice::from_ref(&charge))
        .await
        .unwrap();
    db.write_entry(&charge).await.unwrap();

    assert_eq!(line_hold(&app, user).await, (line, left - 7));
    let (_, charged, _) = app.ledger(user).await;
    assert_eq!(charged, charged_before + 7);
    assert_eq!(app.logs().await.len(), logs_before + 1);
}

/// Calls that find their key without a line wait for the one opening it
/// instead of each opening their own, and the next line is opened before
/// the current one runs dry; every call is still billed exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_opens_one_line_at_a_time_and_the_next_ahead() {
    let (app, _mock) = credit_line_app(10).await;
    let billing = &app.app.state.billing;
    let (user, key) = app.user_with_key(1_000_000).await;

    // Sequential calls: the line (ten holds) has room for the calls while
    // what is left covers a hold; the next line opens in the background
    // once a draw leaves less than a quarter, well before that.
    let (hold, cost) = (hold_for_metered(), METERED_COST);
    let room = (9 * hold / cost + 1) as usize;
    let mut sequential = 0;
    while billing.lines_opened() < 2 && sequential < room {
        let r = app.chat(&key, metered_body(false)).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        sequential += 1;
        app.settled().await;
        for _ in 0..100 {
            if billing.lines_opened() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(billing.lines_opened(), 2, "the next line opened");
    assert!(
        sequential < room,
        "it opened after {sequential} calls, before the line ran dry ({room})"
    );

    // Forty calls at once on a fresh key: a handful of lines, not one per
    // call that found none.
    let (user2, key2) = app.user_with_key(1_000_000).await;
    let before = billing.lines_opened();
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let (client, url, key2) = (
                app.client.clone(),
                app.url("/v1/chat/completions"),
                key2.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(key2)
                    .json(&metered_body(i % 2 == 0))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    app.settled().await;
    let opened = billing.lines_opened() - before;
    assert!(
        (1..=8).contains(&opened),
        "40 calls on 10-call lines opened {opened} lines"
    );
    for (user, calls) in [(user, sequential as i64), (user2, 40)] {
        let (quota, charged, _) = app.ledger(user).await;
        assert_eq!(charged, calls * METERED_COST);
        assert_eq!(quota + held(&app, user).await + charged, 1_000_000);
    }
    billing.release_idle_lines(Duration::ZERO);
    app.settled().await;
    assert_eq!(app.open_holds().await, 0);
    for (user, calls) in [(user, sequential as i64), (user2, 40)] {
        let (quota, _, _) = app.ledger(user).await;
        assert_eq!(quota, 1_000_000 - calls * METERED_COST);
    }
}

/// At shutdown every line is closed and its rest refunded, and no line is
/// opened any more: a call that comes in meanwhile holds on its own.
#[tokio::test]
async fn shutdown_closes_every_line_and_opens_none() {
    let (app, _mock) = credit_line_app(10).await;
    let billing = &app.app.state.billing;
    let (user, key) = app.user_with_key(1_000_000).await;
    let r = app.chat(&key, metered_body(false)).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    app.settled().await;
    assert_eq!(app.open_holds().await, 1);

    assert_eq!(billing.close_lines().await, 1);
    app.settled().await;
    assert_eq!(app.open_holds().await, 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!((quota, charged), (1_000_000 - METERED_COST, METERED_COST));

    let r = app.chat(&key, metered_body(false)).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    app.settled().await;
    assert_eq!(billing.lines_opened(), 1);
    assert_eq!(app.open_holds().await, 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(
        (quota, charged),
        (1_000_000 - 2 * METERED_COST, 2 * METERED_COST)
    );
}

/// A batch of line charges is written with a few statements: each line's
/// share drawn at once, a charge the line cannot cover (an overrun, a line
/// that is gone) from the balance, every log row kept. Written again (a
/// commit whose outcome was never seen), the batch is refused whole and
/// its entries, retried one by one, change nothing.
#[tokio::test]
async fn a_batch_of_line_charges_is_written_together_and_once() {
    let (app, _mock, user, _key, line, left) = with_open_line(100, 1_000_000).await;
    let (quota_before, charged_before, _) = app.ledger(user).await;
    let logs_before = app.logs().await.len();

    let charge = |i: usize, line: &str, from_line: i64, cost: i64| {
        line_charge(&format!("batch-{i}"), user, line, from_line, cost)
    };
    // 120 covered charges of 3 (more than one multi-row insert), an
    // overrun (5 from the line, 4 more from the balance) and a charge on a
    // line that is gone (all 6 from the balance).
    let mut batch: Vec<_> = (0..120).map(|i| charge(i, &line, 3, 3)).collect();
    batch.push(charge(120, &line, 5, 9));
    batch.push(charge(121, "no-such-line", 6, 6));
    let db = &app.app.state.db;
    db.write_ledger(&batch).await.unwrap();

    assert_eq!(line_hold(&app, user).await, (line.clone(), left - 360 - 5));
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, charged_before + 360 + 9 + 6);
    assert_eq!(quota, quota_before - 4 - 6);
    let logs = app.logs().await;
    assert_eq!(logs.len(), logs_before + 122);
    assert_eq!(app.user(user).await["request_count"], 1 + 122);

    assert!(
        db.write_ledger(&batch).await.is_err(),
        "a batch written before is refused"
    );
    for entry in &batch {
        db.write_entry(entry).await.unwrap();
    }
    assert_eq!(line_hold(&app, user).await, (line, left - 365));
    assert_eq!(
        app.ledger(user).await,
        (quota, charged, app.ledger(user).await.2)
    );
    assert_eq!(app.logs().await.len(), logs_before + 122);
}

/// A batch is written in the order its entries were queued: runs of line
/// charges are grouped, but a settlement queued between them keeps its
/// place, so log ids follow the order the calls settled in.
#[tokio::test]
async fn a_ledger_batch_keeps_the_order_its_entries_were_queued_in() {
    let (app, _mock, user, _key, line, _) = with_open_line(100, 1_000_000).await;
    let db = &app.app.state.db;
    let token_id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(
        db.sql("SELECT token_id FROM holds WHERE id = ?")
            .into_owned(),
    ))
    .bind(&line)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let hold = transit::store::NewHold {
        id: "order-hold".into(),
        user_id: user,
        token_id,
        amount: 10,
        model: "metered".into(),
        prompt_tokens: 0,
        price: "{}".into(),
        request_id: String::new(),
        client_ip: String::new(),
        is_stream: false,
        instance: "test".into(),
        lease_until: 9_999_999_999_999,
    };
    assert!(db.place_hold(&hold).await.unwrap());
    let settle = transit::store::LedgerEntry::Settle(transit::store::Settlement {
        hold_id: hold.id.clone(),
        lease_expired_by: None,
        cost: 4,
        counts_as_request: 1,
        log: transit::store::ConsumeLog {
            kind: "consume",
            user_id: user,
            model: "metered".into(),
            content: "order-2".into(),
            ..Default::default()
        },
    });
    let batch = [
        line_charge("order-0", user, &line, 3, 3),
        line_charge("order-1", user, &line, 3, 3),
        settle,
        line_charge("order-3", user, &line, 3, 3),
        line_charge("order-4", user, &line, 3, 3),
    ];
    db.write_ledger(&batch).await.unwrap();

    let written: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(
        db.sql("SELECT content FROM logs WHERE content LIKE 'order-%' ORDER BY id")
            .into_owned(),
    ))
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(
        written,
        ["order-0", "order-1", "order-2", "order-3", "order-4"]
    );
    assert_eq!(app.open_holds().await, 1, "only the line's hold is left");
}

/// The recovery sweep only takes a hold whose lease is still expired when
/// it settles it: a hold its owner renewed meanwhile stays with the owner.
#[tokio::test]
async fn the_sweep_leaves_a_hold_renewed_meanwhile() {
    let (app, _mock, user, _key, line, left) = with_open_line(10, 100_000).await;
    let sweep = transit::store::Settlement {
        hold_id: line.clone(),
        // The lease (60 s) runs beyond this.
        lease_expired_by: Some(0),
        cost: 0,
        counts_as_request: 0,
        log: transit::store::ConsumeLog {
            user_id: user,
            ..Default::default()
        },
    };
    assert_eq!(app.app.state.db.settle_hold(&sweep).await.unwrap(), None);
    assert_eq!(line_hold(&app, user).await, (line, left));
}

/// When another instance took a line back (this one missed its lease), the
/// line is closed here at the next sweep: the next call opens a new one,
/// and the ledger still balances.
#[tokio::test]
async fn a_line_taken_back_elsewhere_is_closed_here() {
    let (app, _mock, user, key, line, _) = with_open_line(10, 100_000).await;
    // What the other instance's sweep does with a line it finds expired.
    let taken = transit::store::Settlement {
        hold_id: line.clone(),
        lease_expired_by: None,
        cost: 0,
        counts_as_request: 0,
        log: transit::store::ConsumeLog {
            user_id: user,
            ..Default::default()
        },
    };
    assert!(
        app.app
            .state
            .db
            .settle_hold(&taken)
            .await
            .unwrap()
            .is_some()
    );
    app.app.state.billing.maintain().await;

    let r = app.chat(&key, metered_body(true)).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    app.settled().await;
    let (new_line, _) = line_hold(&app, user).await;
    assert_ne!(new_line, line, "the call drew on a new line");
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * METERED_COST);
    assert_eq!(100_000 - quota - held(&app, user).await, charged);
}

/// Entries the database refuses stay queued in memory and are written by
/// the next sweep once it accepts them again; nothing is lost or doubled.
#[tokio::test]
async fn ledger_entries_that_fail_are_written_by_a_later_sweep() {
    let (app, _mock) = metered_app().await;
    let (user, key) = app.user_with_key(100_000).await;
    rename_table(&app, "logs", "logs_away").await;
    for stream in [false, true] {
        let r = app.chat(&key, metered_body(stream)).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    app.settled().await;
    assert_eq!(
        app.open_holds().await,
        2,
        "the settlements could not be written"
    );
    rename_table(&app, "logs_away", "logs").await;
    assert_eq!(app.app.state.billing.retry_dead_letters().await, 0);
    assert_eq!(app.open_holds().await, 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, 2 * METERED_COST);
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.logs().await.len(), 2);
}

/// A credit line's release waits behind a charge of the line that could
/// not be written: released first, it would refund what the charge draws.
#[tokio::test]
async fn a_line_release_waits_behind_its_unwritten_charge() {
    let (app, _mock) = credit_line_app(10).await;
    let (user, key) = app.user_with_key(100_000).await;
    rename_table(&app, "logs", "logs_away").await;
    let r = app.chat(&key, metered_body(false)).await;
    assert_eq!(r.status(), 200);
    app.settled().await;
    assert_eq!(app.app.state.billing.release_idle_lines(Duration::ZERO), 1);
    app.settled().await;
    assert_eq!(
        app.open_holds().await,
        1,
        "the release waits for the charge"
    );
    rename_table(&app, "logs_away", "logs").await;
    assert_eq!(app.app.state.billing.retry_dead_letters().await, 0);
    assert_eq!(app.open_holds().await, 0);
    let (quota, charged, _) = app.ledger(user).await;
    assert_eq!(charged, METERED_COST);
    assert_eq!(100_000 - quota, charged);
    assert_eq!(app.logs().await.len(), 1);
}

/// Rename a table: the database refuses every write to the old name.
async fn rename_table(app: &TestApp, from: &str, to: &str) {
    let db = &app.app.state.db;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {from} RENAME TO {to}"
    )))
    .execute(db.pool())
    .await
    .unwrap();
}
