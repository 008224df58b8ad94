//! `serve`'s OpenAI-compatible API, driven over plain HTTP with the JSON the `openai` Python
//! package sends, on a small random model: the greedy answer equals the `chat` program's,
//! streamed or not; `stop`, `usage`, `/v1/models` and a graceful shutdown on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{data_url, example, png, stream_text, Server};
use serde_json::{json, Value};

const QUESTION: &str = "What is in the image?";
const MAX_TOKENS: usize = 8;

/// The body the `openai` package sends for a text + image question.
fn request(image_url: &str, stream: bool, extra: Value) -> String {
    let mut body = json!({
        "messages": [{
            "role": "user",
            "content": [
                {"type": "text", "text": QUESTION},
                {"type": "image_url", "image_url": {"url": image_url}},
            ],
        }],
        "model": "vlm",
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string()
}

/// The `chat` program's greedy answer to the same question about the same image, with the
/// tokenizer given as its folder (`--tokenizer DIR`).
fn chat_answer(image: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.png");
    std::fs::write(&path, image).expect("write image");
    let tokenizer_dir = common::tokenizer_file();
    let tokenizer_dir = tokenizer_dir.parent().expect("tokenizer folder");
    let output = Command::new(example("chat"))
        .arg("--checkpoint")
        .arg(common::checkpoint())
        .arg("--tokenizer")
        .arg(tokenizer_dir)
        .arg("--image")
        .arg(&path)
        .args([
            "--prompt",
            QUESTION,
            "--max-new-tokens",
            &MAX_TOKENS.to_string(),
        ])
        .output()
        .expect("run chat");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    stdout
        .strip_suffix('\n')
        .expect("chat ends its answer with a newline")
        .to_string()
}

#[test]
fn greedy_answers_equal_the_chat_program_streamed_or_not() {
    // The same tokenizer as a file here and as its folder in `chat_answer`.
    let tokenizer = common::tokenizer_file().display().to_string();
    let server = Server::start(&["--tokenizer", &tokenizer]);
    let image = png(48, 3);
    let url = data_url(&image);

    let (status, body) = server.post("/v1/chat/completions", &request(&url, false, json!({})));
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "vlm");
    let choice = &reply["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let answer = choice["message"]["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(!answer.is_empty());
    let usage = &reply["usage"];
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    assert!(
        prompt > 16,
        "16 image placeholders and the question: {usage}"
    );
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
    match choice["finish_reason"].as_str() {
        Some("length") => assert_eq!(completion, MAX_TOKENS as u64),
        Some("stop") => assert!(completion <= MAX_TOKENS as u64),
        other => panic!("finish_reason {other:?}"),
    }

    let options = json!({"stream_options": {"include_usage": true}});
    let (status, stream) = server.post("/v1/chat/completions", &request(&url, true, options));
    assert_eq!(status, 200, "{stream}");
    assert_eq!(stream_text(&stream), answer);
    assert!(
        stream.contains("\"usage\""),
        "include_usage sends the counts: {stream}"
    );

    assert_eq!(chat_answer(&image), answer, "serve and chat differ");

    // Another image gives another answer: the image reaches the model.
    let other = request(&data_url(&png(48, 20)), false, json!({}));
    let (_, body) = server.post("/v1/chat/completions", &other);
    let other: Value = serde_json::from_str(&body).expect("json");
    assert_ne!(other["choices"][0]["message"]["content"], answer.as_str());
}

#[test]
fn a_stop_string_ends_the_answer_before_it() {
    // The tokenizer as its folder.
    let tokenizer = common::tokenizer_file();
    let folder = tokenizer
        .parent()
        .expect("tokenizer folder")
        .display()
        .to_string();
    let server = Server::start(&["--tokenizer", &folder]);
    let url = data_url(&png(32, 1));
    let (_, body) = server.post("/v1/chat/completions", &request(&url, false, json!({})));
    let reply: Value = serde_json::from_str(&body).expect("json");
    let answer = reply["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let chars: Vec<char> = answer.chars().collect();
    assert!(chars.len() >= 4, "a long enough answer to cut: {answer:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let expected = &answer[..answer.find(&stop).expect("stop is in the answer")];
    for stream in [false, true] {
        let body = request(&url, stream, json!({"stop": [stop]}));
        let (status, body) = server.post("/v1/chat/completions", &body);
        assert_eq!(status, 200, "{body}");
        let text = match stream {
            true => stream_text(&body),
            false => {
                let reply: Value = serde_json::from_str(&body).expect("json");
                assert_eq!(reply["choices"][0]["finish_reason"], "stop");
                reply["choices"][0]["message"]["content"]
                    .as_str()
                    .expect("text")
                    .to_string()
            }
        };
        assert_eq!(text, expected, "stop {stop:?} in {answer:?}");
    }
}

#[test]
fn models_are_listed_and_sigterm_shuts_down_cleanly() {
    let mut server = Server::start(&["--model-name", "tiny"]);
    let (status, body) = server.get("/v1/models");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");
    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("/page.js") && !page.contains("http"),
        "no external asset"
    );

    let pid = server.pid().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(kill.expect("kill").success());
    let start = Instant::now();
    loop {
        if let Some(status) = server.child().try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no shutdown");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_goes_away_frees_the_model() {
    let flags = ["--max-tokens-limit", "1000000", "--max-context", "2000000"];
    let server = Server::start(&flags);
    let url = data_url(&png(32, 2));
    // Precondition: greedy decoding of this prompt does not stop by itself.
    let (_, body) = server.post(
        "/v1/chat/completions",
        &request(&url, false, json!({"max_tokens": 300})),
    );
    let reply: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(reply["choices"][0]["finish_reason"], "length", "{reply}");

    // A stream of a million tokens, abandoned after its first chunk.
    let endless = request(&url, true, json!({"max_tokens": 1_000_000}));
    let address = server.base.strip_prefix("http://").expect("http address");
    let mut connection = TcpStream::connect(address).expect("connect");
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        endless.len()
    );
    connection.write_all(head.as_bytes()).expect("send head");
    connection.write_all(endless.as_bytes()).expect("send body");
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let n = connection.read(&mut buffer).expect("read");
        assert!(n > 0, "the stream closed early");
        received.extend_from_slice(&buffer[..n]);
    }
    drop(connection);

    // The model thread gives up the abandoned answer and takes the next request.
    let (done, finished) = mpsc::channel();
    let base = server.base.clone();
    let next = request(&url, false, json!({}));
    std::thread::spawn(move || {
        let reply = ureq::post(&format!("{base}/v1/chat/completions")).send_string(&next);
        let _ = done.send(reply.map(|r| r.status()).ok());
    });
    let status = finished.recv_timeout(Duration::from_secs(60));
    assert_eq!(
        status,
        Ok(Some(200)),
        "the next request waited for the abandoned one"
    );
}
