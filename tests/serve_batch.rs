//! `serve`'s continuous batching: 16 clients at once, with and without images, streamed or
//! not, each with its own `max_tokens` and `stop`, get the same greedy answers as one request
//! at a time (`--max-batch-size 1`); `/metrics` reports the batch bound. An image sent again
//! takes its features from the cache (`--image-cache-size`) and gets the same answer.
//! Loopback only, on the small test model.

mod common;

use common::{data_url, png, stream_text, Server};
use serde_json::{json, Value};

const CLIENTS: usize = 16;

/// Client `index`'s request: questions of different lengths, an image for every other one,
/// streamed for every third, different `max_tokens`, and a `stop` string for some.
fn request(index: usize) -> Value {
    let text = format!(
        "question {index}: {}",
        "what is shown here? ".repeat(index % 4 + 1)
    );
    let content = match index % 2 {
        0 => json!(text),
        _ => json!([
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": data_url(&png(40, index as u32))}},
        ]),
    };
    let mut body = json!({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 6 + index % 5 * 3,
        "temperature": 0,
        "stream": index.is_multiple_of(3),
    });
    if index % 4 == 1 {
        body["stop"] = json!(["e"]);
    }
    body
}

/// The answer's text, streamed or not.
fn answer(server: &Server, body: &Value) -> String {
    if body["stream"] == json!(true) {
        let (status, reply) = server.post("/v1/chat/completions", &body.to_string());
        assert_eq!(status, 200, "{reply}");
        return stream_text(&reply);
    }
    server.answer(body)
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.parse().ok())?
    })
}

#[test]
fn concurrent_greedy_answers_equal_one_at_a_time() {
    let requests: Vec<Value> = (0..CLIENTS).map(request).collect();
    let sequential: Vec<String> = {
        let server = Server::start(&["--max-batch-size", "1"]);
        requests.iter().map(|body| answer(&server, body)).collect()
    };
    let answered = sequential.iter().filter(|text| !text.is_empty()).count();
    assert!(
        answered >= CLIENTS / 2,
        "mostly empty answers: {sequential:?}"
    );
    let server = Server::start(&["--max-batch-size", "16", "--queue", "32"]);
    let concurrent: Vec<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = requests
            .iter()
            .map(|body| scope.spawn(|| answer(&server, body)))
            .collect();
        clients
            .into_iter()
            .map(|client| client.join().expect("client"))
            .collect()
    });
    for (index, (batched, alone)) in concurrent.iter().zip(&sequential).enumerate() {
        assert_eq!(batched, alone, "client {index}");
    }
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "vlm_max_batch_size"), Some(16.0));
    assert_eq!(sample(&metrics, "vlm_batch_size"), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, "vlm_running_sequences"), Some(0.0));
}

#[test]
fn an_image_sent_again_skips_the_tower_with_the_same_answer() {
    let body = request(1);
    let cached = Server::start(&[]);
    let first = answer(&cached, &body);
    let again = answer(&cached, &body);
    let (_, metrics) = cached.get("/metrics");
    assert_eq!(
        sample(&metrics, "vlm_image_cache_misses_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "vlm_image_cache_hits_total"),
        Some(1.0),
        "{metrics}"
    );
    let other = answer(&cached, &request(3));
    let (_, metrics) = cached.get("/metrics");
    assert_eq!(
        sample(&metrics, "vlm_image_cache_misses_total"),
        Some(2.0),
        "{metrics}"
    );
    let uncached = Server::start(&["--image-cache-size", "0"]);
    assert_eq!(first, answer(&uncached, &body));
    assert_eq!(again, first);
    assert_eq!(other, answer(&uncached, &request(3)));
    let (_, metrics) = uncached.get("/metrics");
    assert_eq!(
        sample(&metrics, "vlm_image_cache_hits_total"),
        Some(0.0),
        "{metrics}"
    );
}
