//! `serve` as an inference server: OpenAI's semantics for fields it does not implement and
//! for `model`, its operations endpoints (`/health`, `/v1/models/{id}`, `/metrics`, request
//! ids, `Retry-After`, the access log) and its bounds (the text measured before tokenizing,
//! idle connections closed by the timeouts), over loopback on the small test model.

mod common;

#[allow(dead_code)] // the test uses the error type only
#[path = "../examples/serve/error.rs"]
mod error;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::{example, Server};
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

#[test]
fn health_models_and_request_ids() {
    let server = Server::start(&["--served-model-name", "alias"]);
    let (status, body) = server.get("/health");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["status"],
        "ok"
    );

    let (status, body) = server.get("/v1/models");
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["vlm", "alias"]);
    assert_eq!(list["data"][1]["status"], "ready", "{body}");
    for id in ["vlm", "alias"] {
        let (status, body) = server.get(&format!("/v1/models/{id}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("json")["id"],
            id
        );
    }
    let (status, body) = server.get("/v1/models/other");
    assert_eq!(status, 404, "{body}");
    assert_eq!(error(&body)["code"], "model_not_found");

    let url = format!("{}/health", server.base);
    let echoed = ureq::get(&url)
        .set("x-request-id", "abc-123")
        .call()
        .expect("health");
    assert_eq!(echoed.header("x-request-id"), Some("abc-123"));
    let first = ureq::get(&url).call().expect("health");
    let second = ureq::get(&url).call().expect("health");
    let (first, second) = (first.header("x-request-id"), second.header("x-request-id"));
    assert!(
        first.is_some_and(|id| !id.is_empty()),
        "a request id is made"
    );
    assert_ne!(first, second, "each request its own id");
}

/// The samples of a Prometheus text exposition, checked line by line: `# HELP`/`# TYPE`
/// comments, else `name{labels} value` with a float value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let metric = name.split('{').next().expect("name");
        assert!(
            metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            samples.insert(name.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_the_traffic() {
    let server = Server::start(&[]);
    let (status, before) = server.get("/metrics");
    assert_eq!(status, 200);
    let before = samples(&before);
    let (status, body) = server.post("/v1/chat/completions", &request(json!({})));
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("json");
    let tokens = reply["usage"]["completion_tokens"]
        .as_f64()
        .expect("tokens");
    let (_, after) = server.get("/metrics");
    let after = samples(&after);
    let moved = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    assert_eq!(moved("vlm_generated_tokens_total"), tokens);
    assert_eq!(
        moved("vlm_requests_total{code=\"200\"}"),
        2.0,
        "the first /metrics and the completion"
    );
    assert_eq!(moved("vlm_time_to_first_token_seconds_count"), 1.0);
    assert_eq!(moved("vlm_inter_token_latency_seconds_count"), tokens - 1.0);
    assert_eq!(
        after["vlm_time_to_first_token_seconds_bucket{le=\"+Inf\"}"],
        after["vlm_time_to_first_token_seconds_count"]
    );
    assert_eq!(after["vlm_queue_length"], 0.0);
    assert_eq!(after["vlm_running_sequences"], 0.0);
}

#[test]
fn a_503_says_when_to_retry() {
    let overloaded = error::ApiError::server(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "busy");
    let response = overloaded.into_response();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let refused = error::ApiError::invalid(None, "bad").into_response();
    assert!(refused.headers().get("retry-after").is_none());
}

#[test]
fn every_request_writes_one_access_log_line() {
    let mut child = Command::new(example("serve"))
        .arg("--checkpoint")
        .arg(common::checkpoint())
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let (lines, log) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let base = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("listening on ").map(str::to_string))
        .expect("listening");
    let reply = ureq::get(&format!("{base}/v1/models/none"))
        .set("x-request-id", "log-me")
        .call();
    assert!(matches!(reply, Err(ureq::Error::Status(404, _))));
    let entry = loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("an access-log line");
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            break entry;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/v1/models/none");
    assert_eq!(entry["status"], 404);
    assert_eq!(entry["request_id"], "log-me");
    assert!(
        entry["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{entry}"
    );
}

/// A field of /proc/PID/status, in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with(field)).expect(field);
    let value = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok());
    value.expect("memory value")
}

/// CPU time of a process so far (user + system), in clock ticks of 10 ms.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<u64>().expect("ticks");
    ticks(11) + ticks(12)
}

#[test]
fn a_text_body_near_the_body_limit_is_refused_before_tokenizing() {
    let server = Server::start(&[]);
    let pid = server.pid();
    // The default body limit is 20 MiB: text just under it.
    let text = "hello world ".repeat((20 << 20) / 12 - 100);
    let body = json!({"messages": [{"role": "user", "content": text}]}).to_string();
    assert!(body.len() < 20 << 20);
    let (rss, cpu) = (memory_kib(pid, "VmRSS:"), cpu_ticks(pid));
    let started = std::time::Instant::now();
    let (status, reply) = server.post("/v1/chat/completions", &body);
    let elapsed = started.elapsed();
    assert_eq!(status, 400, "{}", &reply[..reply.len().min(500)]);
    assert_eq!(error(&reply)["code"], "context_length_exceeded");
    let cpu_seconds = (cpu_ticks(pid) - cpu) as f64 / 100.0;
    let extra_mib = memory_kib(pid, "VmHWM:").saturating_sub(rss) / 1024;
    eprintln!("near-limit text: {elapsed:?} wall, {cpu_seconds} s CPU, peak +{extra_mib} MiB");
    assert!(cpu_seconds < 2.0, "{cpu_seconds} s of CPU");
    assert!(extra_mib < 200, "{extra_mib} MiB more at the peak");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

/// The soft limit on this process' open files (`Max open files` of /proc/self/limits).
fn open_file_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files"));
    let soft = line
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok());
    soft.unwrap_or(1024)
}

/// Whether the server closed `stream` (end of file or reset) within `wait`.
fn closed_within(stream: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buffer = [0; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) => {
                return !matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn idle_connections_are_closed_while_clients_keep_getting_answers() {
    use std::io::Write;
    use std::net::TcpStream;
    let server = Server::start(&["--idle-timeout", "1", "--max-connections", "100"]);
    let address = server
        .base
        .strip_prefix("http://")
        .expect("address")
        .to_string();
    // 300 idle sockets, fewer under a low descriptor limit (the server shares it).
    let count = 300.min(open_file_limit() / 4);
    let mut idle: Vec<TcpStream> = (0..count)
        .map(|_| TcpStream::connect(&address).expect("connect"))
        .collect();
    // Some send half a request head (a slow client); one is kept alive after an answer.
    for stream in idle.iter_mut().step_by(10) {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .expect("half a head");
    }
    let mut kept_alive = TcpStream::connect(&address).expect("connect");
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");

    let started = std::time::Instant::now();
    let (status, body) = server.post("/v1/chat/completions", &request(json!({})));
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "{count} idle connections: a client answered after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(20)),
            "idle connection {i} still open"
        );
    }
    assert!(
        closed_within(&mut kept_alive, Duration::from_secs(20)),
        "the kept-alive connection"
    );
    assert_eq!(server.get("/health").0, 200, "and the server still answers");
}

#[test]
fn a_body_that_stalls_is_answered_408() {
    use std::io::{Read, Write};
    let server = Server::start(&["--body-timeout", "1"]);
    let address = server.base.strip_prefix("http://").expect("address");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let head =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 1000\r\n\r\n{\"messages\": ";
    stream
        .write_all(head.as_bytes())
        .expect("head and part of the body");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let started = std::time::Instant::now();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("invalid_request_error"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn requests_take_turns_for_preprocessing_and_are_all_answered() {
    let server = std::sync::Arc::new(Server::start(&["--max-preprocess", "1"]));
    let expected = server.answer(&serde_json::from_str(&request(json!({}))).expect("json"));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            std::thread::spawn(move || server.post("/v1/chat/completions", &request(json!({}))))
        })
        .collect();
    for client in clients {
        let (status, body) = client.join().expect("client");
        assert_eq!(status, 200, "{body}");
        let reply: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(reply["choices"][0]["message"]["content"], expected.as_str());
    }
}
