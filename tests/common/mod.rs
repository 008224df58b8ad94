//! Shared by the tests of the programs (`serve`, `eval`, `merge`): a small random VLM
//! checkpoint with the real Qwen2 tokenizer, the example binaries `cargo test` builds, a
//! running `serve`, synthetic PNGs and plain HTTP.
//!
//! The model is random, so its answers are gibberish, but greedy decoding makes them
//! deterministic, which is all these tests compare.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use vlm::burn::tensor::backend::Backend;
use vlm::data::Tokenizer;
use vlm::hf::{SafetensorsWriter, WeightStore};
use vlm::model::{
    load_language_model, AnyProjector, ChatTemplateConfig, ProjectorConfig, ProjectorKind,
    VisionLanguageModel, VisionTower, VisionTowerConfig, VlmConfig,
};
use vlm::vision::{FeatureSelection, SelectStrategy};
use vlm_testkit::{device, fixture, TestBackend};

/// The system prompt the test checkpoint records.
pub const SYSTEM_PROMPT: &str = "You are a test model.";

/// The test checkpoint, built once per test binary under Cargo's target tmp folder.
pub fn checkpoint() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let binary = std::env::current_exe().expect("test binary path");
        let name = binary.file_stem().expect("binary name").to_string_lossy();
        // `serve_api-<hash>`: one folder per test, whatever the build.
        let test = name.rsplit_once('-').map_or(&*name, |(test, _)| test);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("model-{test}"));
        let _ = std::fs::remove_dir_all(&root);
        build_checkpoint(&root)
    })
}

/// The Qwen2 tokenizer file the test model uses.
pub fn tokenizer_file() -> PathBuf {
    fixture("..").join("tokenizer/qwen2/tokenizer.json")
}

/// Writes the LLM (random Qwen2 over the tokenizer's whole vocabulary), then the
/// checkpoint: the SigLIP fixture tower (16 patch tokens), a random MLP projector.
fn build_checkpoint(root: &Path) -> PathBuf {
    let llm = root.join("llm");
    let tokenizer = Tokenizer::from_file(tokenizer_file()).expect("tokenizer");
    write_llm(&llm, tokenizer.vocab_size());
    std::fs::copy(tokenizer_file(), llm.join("tokenizer.json")).expect("copy tokenizer");
    let dev = device();
    let (tower, vision) = siglip_tower();
    let language_model = load_language_model::<TestBackend>(&llm, &dev).expect("llm");
    let image_token = tokenizer.token_id("<|image_pad|>").expect("image token");
    let model = VisionLanguageModel::new(vision, random_projector(), language_model, image_token)
        .expect("model");
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: Some(SYSTEM_PROMPT.into()),
    };
    let config = VlmConfig::for_model(&model, llm, tower, template);
    model
        .save_checkpoint(root.join("checkpoint"), &config)
        .expect("save checkpoint")
}

/// The `siglip_vision` fixture as a checkpoint's tower (penultimate layer, all 16 patch
/// tokens of 32 wide features), with its config.
pub fn siglip_tower() -> (VisionTowerConfig, VisionTower<TestBackend>) {
    let tower = VisionTowerConfig {
        path: fixture("siglip_vision"),
        weight_prefix: None,
        feature_layer: -2,
        feature_strategy: SelectStrategy::Full,
    };
    let selection = FeatureSelection {
        layer: tower.feature_layer,
        strategy: tower.feature_strategy,
    };
    let vision = VisionTower::load(
        &tower.path,
        tower.weight_prefix.as_deref(),
        selection,
        &device(),
    );
    (tower, vision.expect("vision tower"))
}

/// A new (random, seeded) LLaVA MLP projector from the SigLIP fixture's 32 to the Qwen fixtures' 64.
pub fn random_projector() -> AnyProjector<TestBackend> {
    let config = ProjectorConfig {
        kind: ProjectorKind::Mlp2xGelu,
        input_dim: 32,
        output_dim: 64,
    };
    // Seeded, so that every build of the test model answers the same.
    TestBackend::seed(&device(), 0);
    AnyProjector::new(&config, &device()).expect("projector")
}

/// A Qwen2 folder shaped like the `qwen2_tied` fixture but with a `vocab`-row embedding and
/// an untied LM head (tied, a random model mostly repeats its last token): the fixture's
/// other weights, random rows (uniform, fixed seeds) for the embedding and the head.
fn write_llm(dir: &Path, vocab: usize) {
    std::fs::create_dir_all(dir).expect("llm dir");
    let base = fixture("qwen2_tied");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(base.join("config.json")).expect("config"))
            .expect("config json");
    config["vocab_size"] = vocab.into();
    config["tie_word_embeddings"] = false.into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let store = WeightStore::open_dir(&base).expect("fixture weights");
    let dev = device();
    let mut writer = SafetensorsWriter::new();
    for key in store.keys() {
        let shape = store.info(key).expect("info").shape;
        let data = match (key, shape.as_slice()) {
            ("model.embed_tokens.weight", &[_, hidden]) => {
                writer.add_data("lm_head.weight", random_rows(vocab, hidden, 2));
                random_rows(vocab, hidden, 1)
            }
            (_, &[_]) => store
                .float_any::<TestBackend, 1>(key, &dev)
                .expect(key)
                .into_data(),
            _ => store
                .float_any::<TestBackend, 2>(key, &dev)
                .expect(key)
                .into_data(),
        };
        writer.add_data(key, data);
    }
    writer
        .write(&dir.join("model.safetensors"))
        .expect("write llm");
}

/// `[rows, cols]` values uniform in [-1, 1) from a xorshift generator seeded with `seed`.
fn random_rows(rows: usize, cols: usize, seed: u64) -> vlm::burn::tensor::TensorData {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(seed);
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    vlm::burn::tensor::TensorData::new(values, [rows, cols])
}

/// An example program built by `cargo test` (`target/<profile>/examples/NAME`).
pub fn example(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo test` builds it (or `cargo build --example {name}`)",
        path.display()
    );
    path
}

/// A synthetic `side` x `side` RGB PNG: a gradient with a square whose place depends on `seed`.
pub fn png(side: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        let inside = (x + seed) % side < side / 2 && (y + 2 * seed) % side < side / 3;
        let value = ((x * 255) / side) as u8;
        match inside {
            true => image::Rgb([230, 40, 40]),
            false => image::Rgb([value, 120, 255 - value]),
        }
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode png");
    bytes
}

/// A running `serve` on 127.0.0.1 over the test checkpoint; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Server {
    /// Starts `serve` on a free port with `flags` and waits until it listens.
    pub fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(example("serve"))
            .arg("--checkpoint")
            .arg(checkpoint())
            .args(["--port", "0"])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("listening on ") {
                    let _ = tx.send(base.to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start listening");
            }
        };
        Self { child, base }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process, to signal or wait for.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `POST path` with a JSON body: the status and the body.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let request = ureq::post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json")
            .set("Authorization", "Bearer sk-test");
        reply(request.send_string(body))
    }

    /// The answer of a non-streaming `POST /v1/chat/completions` with `body` (status 200).
    pub fn answer(&self, body: &serde_json::Value) -> String {
        let (status, reply) = self.post("/v1/chat/completions", &body.to_string());
        assert_eq!(status, 200, "{reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).expect("json");
        let content = reply["choices"][0]["message"]["content"].as_str();
        content.expect("content").to_string()
    }

    /// `GET path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        reply(ureq::get(&format!("{}{path}", self.base)).call())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(response) => (response.status(), response.into_string().expect("body")),
        Err(ureq::Error::Status(status, response)) => {
            (status, response.into_string().expect("body"))
        }
        Err(err) => panic!("HTTP transport error: {err}"),
    }
}

/// A base64 `data:` URL of PNG bytes.
pub fn data_url(png: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(png);
    format!("data:image/png;base64,{encoded}")
}

/// The text of an OpenAI stream: the `content` deltas joined, checking the chunk format and
/// the final `data: [DONE]`.
pub fn stream_text(body: &str) -> String {
    let events: Vec<&str> = body
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"), "{body}");
    let mut text = String::new();
    for event in &events[..events.len() - 1] {
        let data = event.strip_prefix("data: ").expect("a data event");
        let chunk: serde_json::Value = serde_json::from_str(data).expect("chunk json");
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    text
}
