//! Cohere (chat, embeddings, rerank) and Jina / Voyage (embeddings,
//! rerank) channels through the running gateway, against protocol mocks
//! that refuse what the real APIs refuse; every successful call's bill is
//! checked (one quota unit per token under the test pricing).

use serde_json::{Value, json};

use crate::cohere_mock::*;
use crate::helpers::*;

const QUOTA: i64 = 1_000_000;
const CHAT_COST: i64 = (COHERE_INPUT_TOKENS + COHERE_OUTPUT_TOKENS) as i64;

async fn cohere_app() -> (TestApp, MockCohere, i64, String) {
    let app = spawn_app().await;
    let mock = MockCohere::start("co-key").await;
    // Created by type name with only a key (and the mock's address).
    app.channel(json!({"name": "cohere", "type": "cohere", "secret_key": "co-key", "base_url": mock.base_url(),
                       "models": ["command-a", "embed-v4.0", "rerank-v3.5", COHERE_RATE_LIMITED_MODEL],
                       "model_mapping": {"command-a": "command-a-03-2025"}}))
        .await;
    let (user, key) = app.user_with_key(QUOTA).await;
    (app, mock, user, key)
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

fn chunks(data: &[String]) -> Vec<Value> {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
}

#[tokio::test]
async fn chat_is_translated_and_billed() {
    let (app, mock, user, key) = cohere_app().await;
    let body = json!({
        "model": "command-a",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Say hello"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
            ]},
            // A system message after the user's: Cohere wants it first.
            {"role": "system", "content": "Be brief."}
        ],
        "max_completion_tokens": 64, "top_p": 0.8, "stop": "END", "seed": 7, "user": "u-1",
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    });
    let v = ok_json(post(&app, &key, "/v1/chat/completions", body).await).await;
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "command-a-03-2025");
    assert_eq!(v["choices"][0]["message"]["content"], COHERE_REPLY);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], COHERE_INPUT_TOKENS);
    assert_eq!(v["usage"]["completion_tokens"], COHERE_OUTPUT_TOKENS);

    assert_eq!(mock.last_path(), "/v2/chat");
    let sent = mock.last_body();
    assert_eq!(sent["model"], "command-a-03-2025");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["messages"][1]["content"][1]["type"], "image_url");
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["p"], 0.8);
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["seed"], 7);
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_object", "json_schema": {"type": "object"}})
    );
    assert_eq!(sent["stream"], false);

    let logs = app.logs().await;
    assert_eq!(logs[0]["prompt_tokens"], COHERE_INPUT_TOKENS);
    assert_eq!(logs[0]["completion_tokens"], COHERE_OUTPUT_TOKENS);
    let (balance, charged, _) = app.ledger(user).await;
    assert_eq!(charged, CHAT_COST);
    assert_eq!(balance, QUOTA - CHAT_COST);
}

#[tokio::test]
async fn chat_streams_with_a_usage_chunk() {
    let (app, mock, user, key) = cohere_app().await;
    let mut body = chat_body("command-a", true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&app, &key, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(chunk_text(&data), COHERE_REPLY);
    let chunks = chunks(&data);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], COHERE_INPUT_TOKENS);
    assert_eq!(last["usage"]["completion_tokens"], COHERE_OUTPUT_TOKENS);
    assert_eq!(mock.last_body()["stream"], true);
    assert!(mock.last_body().get("stream_options").is_none());

    let logs = app.logs().await;
    assert_eq!(logs[0]["is_stream"], 1);
    assert_eq!(logs[0]["completion_tokens"], COHERE_OUTPUT_TOKENS);
    assert_eq!(app.ledger(user).await.1, CHAT_COST);
}

#[tokio::test]
async fn tools_both_ways() {
    let (app, mock, user, key) = cohere_app().await;
    let question = json!({"role": "user", "content": "Weather in Paris?"});
    // The model calls the tool...
    let body = json!({"model": "command-a", "messages": [question], "tools": weather_tool(), "tool_choice": "required"});
    let v = ok_json(post(&app, &key, "/v1/chat/completions", body).await).await;
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"location\":\"Paris\"}");
    assert_eq!(choice["message"]["content"], "I will look up the weather.");
    let sent = mock.last_body();
    assert_eq!(sent["tool_choice"], "REQUIRED");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");

    // ... and its result goes back, tied to the call by id (the mock
    // refuses a result that answers no call).
    let assistant = choice["message"].clone();
    let body = json!({"model": "command-a", "tools": weather_tool(), "messages": [
        question, assistant,
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}
    ]});
    let v = ok_json(post(&app, &key, "/v1/chat/completions", body).await).await;
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The weather is sunny, 21 C"
    );
    let sent = mock.last_body();
    assert_eq!(
        sent["messages"][1]["tool_plan"],
        "I will look up the weather."
    );
    assert_eq!(sent["messages"][1]["tool_calls"][0]["id"], call["id"]);
    assert_eq!(sent["messages"][2]["role"], "tool");

    // Streamed tool calls arrive as OpenAI tool call deltas.
    let body = json!({"model": "command-a", "stream": true, "messages": [{"role": "user", "content": "Weather?"}],
                      "tools": weather_tool(), "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
    let r = post(&app, &key, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    let chunks = chunks(&sse_data(r).await);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls[0]["id"], "get_weather_mock1");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"location\":\"Paris\"}");
    assert!(calls.iter().all(|c| c["index"] == 0));
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    assert_eq!(app.ledger(user).await.1, 3 * CHAT_COST);
}

#[tokio::test]
async fn errors_map_to_the_gateways() {
    let (app, mock, user, key) = cohere_app().await;
    // A tool result that answers no call: Cohere's 400, its message kept.
    let body = json!({"model": "command-a", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "nope", "content": "x"}
    ]});
    let r = post(&app, &key, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match any tool call"),
        "{v}"
    );
    assert_eq!(mock.requests(), 1, "a client error is not retried");

    // What the adapter refuses never goes upstream.
    let body =
        json!({"model": "command-a", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(
        post(&app, &key, "/v1/chat/completions", body)
            .await
            .status(),
        400
    );
    assert_eq!(mock.requests(), 1);

    // Rate limited, with Cohere's retry-after.
    let r = post(
        &app,
        &key,
        "/v1/chat/completions",
        chat_body(COHERE_RATE_LIMITED_MODEL, false),
    )
    .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");

    // A wrong key: Cohere's 401 is the gateway's upstream_auth_failed.
    let wrong = spawn_app().await;
    wrong
        .channel(json!({"name": "bad", "type": "cohere", "secret_key": "co-wrong-key", "base_url": mock.base_url(), "models": ["command-a"]}))
        .await;
    let (wrong_user, wrong_key) = wrong.user_with_key(QUOTA).await;
    let r = wrong.chat(&wrong_key, chat_body("command-a", false)).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth_failed");
    assert!(!v.to_string().contains("co-wrong"), "{v}");

    assert_eq!(app.ledger(user).await.1, 0, "failures are not billed");
    assert_eq!(wrong.ledger(wrong_user).await.1, 0);
}

#[tokio::test]
async fn embeddings_and_rerank_on_cohere() {
    let (app, mock, user, key) = cohere_app().await;
    let v = ok_json(
        post(
            &app,
            &key,
            "/v1/embeddings",
            json!({"model": "embed-v4.0", "input": ["hello", "world"], "dimensions": 3, "encoding_format": "float"}),
        )
        .await,
    )
    .await;
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 3);
    assert_eq!(v["usage"]["prompt_tokens"], 2 * COHERE_TOKENS_PER_TEXT);
    let sent = mock.last_body();
    assert_eq!(mock.last_path(), "/v2/embed");
    assert_eq!(sent["texts"], json!(["hello", "world"]));
    assert_eq!(sent["input_type"], "search_document");
    assert_eq!(sent["embedding_types"], json!(["float"]));
    assert_eq!(sent["output_dimension"], 3);
    let embed_cost = (2 * COHERE_TOKENS_PER_TEXT) as i64;
    assert_eq!(app.ledger(user).await.1, embed_cost);

    let v = ok_json(
        post(
            &app,
            &key,
            "/v1/rerank",
            json!({"model": "rerank-v3.5", "query": "capital of France",
                   "documents": ["Berlin is in Germany", {"text": "Paris is the capital of France"}, "Rome"],
                   "top_n": 2, "return_documents": true}),
        )
        .await,
    )
    .await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"], 1);
    assert!(
        results[0]["relevance_score"].as_f64().unwrap()
            > results[1]["relevance_score"].as_f64().unwrap()
    );
    assert_eq!(v["model"], "rerank-v3.5");
    assert_eq!(mock.last_path(), "/v2/rerank");
    // Cohere v2 takes strings only and knows no return_documents.
    assert_eq!(
        mock.last_body()["documents"],
        json!([
            "Berlin is in Germany",
            "Paris is the capital of France",
            "Rome"
        ])
    );
    // Cohere counts search units, not tokens: the gateway bills the prompt
    // tokens it counted at admission.
    let logs = app.logs().await;
    let rerank = logs.iter().find(|l| l["model"] == "rerank-v3.5").unwrap();
    let counted = rerank["prompt_tokens"].as_i64().unwrap();
    assert!(counted > 0, "{rerank}");
    assert_eq!(app.ledger(user).await.1, embed_cost + counted);
}

async fn reranker_app(dialect: Dialect) -> (TestApp, MockReranker, i64, String) {
    let app = spawn_app().await;
    let (kind, key) = match dialect {
        Dialect::Jina => ("jina", "jina-key"),
        Dialect::Voyage => ("voyage", "voyage-key"),
    };
    let mock = MockReranker::start(dialect, key).await;
    app.channel(json!({"name": kind, "type": kind, "secret_key": key, "base_url": mock.base_url(),
                       "models": ["reranker", "embedder"],
                       "model_mapping": {"reranker": format!("{kind}-reranker-up"), "embedder": format!("{kind}-embed-up")}}))
        .await;
    let (user, client_key) = app.user_with_key(QUOTA).await;
    (app, mock, user, client_key)
}

fn rerank_body() -> Value {
    json!({"model": "reranker", "query": "capital of France",
           "documents": ["Berlin is in Germany", "Paris is the capital of France", {"text": "Rome is in Italy"}],
           "top_n": 1, "return_documents": true})
}

#[tokio::test]
async fn jina_rerank_and_embeddings() {
    let (app, mock, user, key) = reranker_app(Dialect::Jina).await;
    let v = ok_json(post(&app, &key, "/v1/rerank", rerank_body()).await).await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "top_n honoured");
    assert_eq!(results[0]["index"], 1);
    assert_eq!(
        results[0]["document"]["text"],
        "Paris is the capital of France"
    );
    assert_eq!(v["usage"]["total_tokens"], JINA_RERANK_TOKENS);
    assert_eq!(mock.last_path(), "/v1/rerank");
    assert_eq!(mock.last_body()["model"], "jina-reranker-up");
    assert_eq!(app.ledger(user).await.1, JINA_RERANK_TOKENS as i64);

    let v = ok_json(
        post(&app, &key, "/v1/embeddings", json!({"model": "embedder", "input": "hello", "dimensions": 2, "encoding_format": "float"})).await,
    )
    .await;
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 2);
    assert_eq!(v["usage"]["prompt_tokens"], RERANKER_TOKENS_PER_INPUT);
    let sent = mock.last_body();
    assert_eq!(sent["model"], "jina-embed-up");
    assert!(sent.get("encoding_format").is_none());
    assert_eq!(
        app.ledger(user).await.1,
        (JINA_RERANK_TOKENS + RERANKER_TOKENS_PER_INPUT) as i64
    );

    // A Jina error reaches the client: an empty query is refused before
    // the adapter; a wrong key is the gateway's upstream_auth_failed.
    let mut bad = rerank_body();
    bad["query"] = json!("");
    assert_eq!(post(&app, &key, "/v1/rerank", bad).await.status(), 400);
    let wrong = spawn_app().await;
    wrong
        .channel(json!({"name": "jina", "type": "jina", "secret_key": "not-jina", "base_url": mock.base_url(), "models": ["reranker"]}))
        .await;
    let (_, wrong_key) = wrong.user_with_key(QUOTA).await;
    let r = post(&wrong, &wrong_key, "/v1/rerank", rerank_body()).await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_auth_failed"
    );
}

#[tokio::test]
async fn voyage_rerank_and_embeddings_are_translated() {
    let (app, mock, user, key) = reranker_app(Dialect::Voyage).await;
    let v = ok_json(post(&app, &key, "/v1/rerank", rerank_body()).await).await;
    // Voyage's `data` comes back as `results`, its documents as {text}.
    assert!(v.get("data").is_none(), "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "top_n went upstream as top_k");
    assert_eq!(results[0]["index"], 1);
    assert_eq!(
        results[0]["document"],
        json!({"text": "Paris is the capital of France"})
    );
    assert_eq!(v["usage"]["total_tokens"], VOYAGE_RERANK_TOKENS);
    let sent = mock.last_body();
    assert_eq!(sent["model"], "voyage-reranker-up");
    assert_eq!(sent["top_k"], 1);
    assert_eq!(sent["documents"][2], "Rome is in Italy");
    assert_eq!(app.ledger(user).await.1, VOYAGE_RERANK_TOKENS as i64);

    let v = ok_json(
        post(
            &app,
            &key,
            "/v1/embeddings",
            json!({"model": "embedder", "input": ["a", "b"], "dimensions": 3, "input_type": "query"}),
        )
        .await,
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["data"][1]["embedding"].as_array().unwrap().len(),
        3,
        "dimensions → output_dimension"
    );
    assert_eq!(v["usage"]["prompt_tokens"], 2 * RERANKER_TOKENS_PER_INPUT);
    let sent = mock.last_body();
    assert_eq!(sent["input_type"], "query");
    assert_eq!(sent["output_dimension"], 3);
    assert_eq!(
        app.ledger(user).await.1,
        (VOYAGE_RERANK_TOKENS + 2 * RERANKER_TOKENS_PER_INPUT) as i64
    );

    // Voyage's 400 passes through with its message.
    let r = post(
        &app,
        &key,
        "/v1/embeddings",
        json!({"model": "embedder", "input": "a", "input_type": "search_document"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input_type"),
        "{v}"
    );
}
