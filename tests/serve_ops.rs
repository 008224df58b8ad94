//! `serve` as an inference server: OpenAI's semantics for fields it does not implement and
//! for `model`, its operations endpoints (`/health`, `/v1/models/{id}`, `/metrics`, request
//! ids, `Retry-After`, the access log) and its bounds (the text measured before tokenizing,
//! idle connections closed by the timeouts), over loopback on the small test model.

mod common;

use common::Server;
use serde_json::{json, Value};

/// A valid text-only request with `extra` fields merged in.
fn request(extra: Value) -> String {
    let mut body = json!({
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 2,
        "temperature": 0,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string()
}

/// The OpenAI error of a reply body.
fn error(body: &str) -> Value {
    let reply: Value = serde_json::from_str(body).expect("json");
    reply["error"].clone()
}

#[test]
fn unimplemented_fields_are_refused_by_name_and_model_must_be_served() {
    let server = Server::start(&["--served-model-name", "alias-a", "--served-model-name", "b"]);
    let refused = [
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        ("tool_choice", json!("auto")),
        ("response_format", json!({"type": "json_object"})),
        ("functions", json!([{"name": "f"}])),
        ("frequency_penalty", json!(0.5)),
        ("made_up_field", json!("x")),
    ];
    for (field, value) in refused {
        let (status, body) = server.post("/v1/chat/completions", &request(json!({field: value})));
        assert_eq!(status, 400, "{field}: {body}");
        let error = error(&body);
        assert_eq!(error["param"], field, "{body}");
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(field)));
    }
    let (status, body) = server.post("/v1/chat/completions", &request(json!({"n": 2})));
    assert_eq!((status, error(&body)["param"].clone()), (400, json!("n")));

    // No-op values and bookkeeping fields are accepted.
    let harmless = json!({"logprobs": false, "tools": [], "user": "u1", "n": 1, "seed": 3});
    let (status, body) = server.post("/v1/chat/completions", &request(harmless));
    assert_eq!(status, 200, "{body}");

    for model in ["vlm", "alias-a", "b"] {
        let (status, body) = server.post("/v1/chat/completions", &request(json!({"model": model})));
        assert_eq!(status, 200, "{model}: {body}");
        let reply: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(reply["model"], "vlm", "answers name the served id");
    }
    let (status, body) = server.post("/v1/chat/completions", &request(json!({"model": "gpt-4o"})));
    assert_eq!(status, 404, "{body}");
    let error = error(&body);
    assert_eq!(error["code"], "model_not_found", "{body}");
    assert_eq!(error["param"], "model", "{body}");
}
