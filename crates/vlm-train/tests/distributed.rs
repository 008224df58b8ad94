//! Data-parallel training on Burn's collective engine, on the CPU: two peers (threads of one
//! process, then two processes over loopback as two nodes) follow the trajectory of one peer
//! with the doubled batch; only rank 0 writes checkpoints; a killed peer makes the other
//! fail within the time limit, and its last checkpoint resumes on another peer count.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{data_in_batches, loss, model_with_dropout, rng_lock, samples, weights, Vlm};
use vlm_train::metrics::{MetricsRecord, METRICS_FILE};
use vlm_train::{
    latest_checkpoint, list_checkpoints, run_local_peers, Peer, Resume, Shard, StepReport,
    TrainArgs, TrainConfig, TrainError, Trainer,
};

/// Steps of the compared runs.
const STEPS: usize = 5;
/// Samples per peer and micro-batch.
const PER_PEER: usize = 2;
/// Environment variables that turn [`node_process`] into one node of a two-node run.
const NODE_RANK: &str = "VLM_DP_NODE_RANK";
const NODE_DIR: &str = "VLM_DP_DIR";
const NODE_PORT: &str = "VLM_DP_PORT";
const NODE_STEPS: &str = "VLM_DP_STEPS";
const NODE_STEP_DELAY_MS: &str = "VLM_DP_STEP_DELAY_MS";
const NODE_TIMEOUT_S: &str = "VLM_DP_TIMEOUT_S";

/// LoRA (no dropout, so that the peers' draws cannot differ from one peer's), 2 micro-batches
/// per step, clipping, decay, checkpoints every 2 steps.
fn config(dir: &Path, per_device: usize, steps: usize) -> TrainConfig {
    TrainConfig {
        per_device_train_batch_size: per_device,
        max_steps: Some(steps),
        save_steps: 2,
        save_total_limit: None,
        logging_steps: 1,
        lora_dropout: 0.0,
        ..common::config(dir)
    }
}

/// The initial model every run starts from (same frozen parts, same adapters). Its
/// adapters are drawn from the backend's process-wide generator, which every in-process
/// trainer reseeds at each step: the caller holds [`rng_lock`] for as long as it draws or
/// trains in this process, so that no other test's run reseeds the generator mid-draw.
fn fresh_model() -> Vlm {
    model_with_dropout(true, 1, 0.0)
}

fn losses(steps: &[StepReport]) -> Vec<f64> {
    steps
        .iter()
        .map(|s| s.loss.expect("no step is skipped"))
        .collect()
}

fn assert_losses_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    let gap = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f64::max);
    eprintln!("largest loss gap to one peer with the doubled batch: {gap:.2e}");
    for (step, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-5,
            "step {}: loss {a} vs {e} (one peer, doubled batch)",
            step + 1
        );
    }
}

/// One peer on the doubled batch: the reference trajectory (losses, final weights), from
/// [`fresh_model`] (the caller holds [`rng_lock`]).
fn single_peer_run(dir: &Path, steps: usize, resume: Resume) -> (Vec<StepReport>, Vlm) {
    let mut trainer =
        Trainer::new(config(dir, 2 * PER_PEER, steps), Default::default(), loss).expect("config");
    let mut data = data_in_batches(samples(16, 5, None), 2 * PER_PEER);
    let outcome = trainer
        .fit(fresh_model(), &mut data, resume)
        .expect("single-peer fit");
    (outcome.steps, outcome.model)
}

/// Checkpoint records of a run's metrics (written by rank 0 only).
fn checkpoint_records(dir: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(dir.join(METRICS_FILE)).expect("metrics");
    text.lines()
        .filter_map(|line| serde_json::from_str::<MetricsRecord>(line).ok())
        .filter_map(|record| match record {
            MetricsRecord::Checkpoint { step, .. } => Some(step),
            _ => None,
        })
        .collect()
}

#[test]
fn shards_split_every_global_batch_between_the_peers() {
    let peers = [Shard::new(0, 2), Shard::new(1, 2)];
    assert_eq!(peers.map(|s| s.part(4)), [Some(0..2), Some(2..4)]);
    assert_eq!(peers.map(|s| s.part(3)), [Some(0..1), Some(1..3)]);
    assert_eq!(
        peers.map(|s| s.part(1)),
        [None, None],
        "too small: left out"
    );
    // 10 samples in global batches of 4: 4, 4, then 2 (one each).
    assert_eq!(peers[0].batches(10, 4), 3);
    assert_eq!(
        peers[0].batches(9, 4),
        2,
        "a last batch of 1 cannot be split"
    );
    assert_eq!(Shard::default().batches(9, 4), 3);
}

#[test]
fn peers_follow_the_configuration() {
    let mut config = TrainConfig {
        devices: vec!["cpu".into(), "cpu".into()],
        num_nodes: 2,
        node_rank: 1,
        coordinator: Some("127.0.0.1:4000".into()),
        ..TrainConfig::default()
    };
    let peers = Peer::local_peers(&config).expect("peers");
    let ranks: Vec<(usize, usize)> = peers.iter().map(|p| (p.rank, p.world)).collect();
    assert_eq!(ranks, [(2, 4), (3, 4)]);
    assert!(peers.iter().all(|p| !p.is_main()));
    config.coordinator = Some("no-port".into());
    let err = Peer::local_peers(&config).expect_err("no port");
    assert_eq!(err.field, "coordinator");
    config.coordinator = None;
    let err = Peer::local_peers(&config).expect_err("no coordinator");
    assert_eq!(err.field, "coordinator");
    config.num_nodes = 1;
    let err = Peer::local_peers(&config).expect_err("rank 1 of 1");
    assert_eq!(err.field, "node_rank");
}

#[test]
fn the_parallel_settings_come_from_toml_and_flags() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }
    let toml = "devices = [\"cpu\", \"cpu\"]\nnum_nodes = 2\nnode_rank = 1\n\
                coordinator = \"127.0.0.1:4000\"\ncollective_timeout_s = 30\n";
    let config = TrainConfig::from_toml_str(toml).expect("toml");
    assert_eq!((config.world_size(), config.collective_timeout_s), (4, 30));
    let cli = Cli::parse_from([
        "train",
        "--devices",
        "cuda:0,cuda:1,cuda:2",
        "--num_nodes",
        "3",
        "--node_rank",
        "2",
        "--coordinator",
        "10.0.0.1:29500",
        "--node_address",
        "10.0.0.3:29501",
    ]);
    let config = TrainConfig::default().with_args(&cli.train).expect("flags");
    let peers = Peer::local_peers(&config).expect("peers");
    let described: Vec<_> = peers.iter().map(|p| (p.rank, p.device.clone())).collect();
    assert_eq!(
        described,
        [
            (6, Some("cuda:0".into())),
            (7, Some("cuda:1".into())),
            (8, Some("cuda:2".into()))
        ]
    );
    assert!(peers.iter().all(|p| p.world == 9));
}

#[test]
fn two_local_peers_follow_one_peer_with_the_doubled_batch() {
    let _serial = rng_lock();
    let dirs = tempfile::tempdir().expect("tempdir");
    let (reference, reference_model) = single_peer_run(&dirs.path().join("one"), STEPS, Resume::No);

    let dir = dirs.path().join("two");
    let config = TrainConfig {
        devices: vec!["cpu".into(), "cpu".into()],
        ..config(&dir, PER_PEER, STEPS)
    };
    let peers = Peer::local_peers(&config).expect("peers");
    let models = Mutex::new(vec![Some(fresh_model()), Some(fresh_model())]);
    let outcomes = run_local_peers(peers, |peer| -> Result<_, TrainError> {
        let model = models.lock().expect("models")[peer.rank]
            .take()
            .expect("one model per peer");
        let mut data = data_in_batches(samples(16, 5, None), PER_PEER).with_shard(peer.rank, 2);
        let mut trainer = Trainer::new(config.clone(), Default::default(), loss)?.with_peer(peer);
        let outcome = trainer.fit(model, &mut data, Resume::No)?;
        Ok((outcome.steps, outcome.last_checkpoint, outcome.model))
    })
    .expect("two peers");

    for (steps, _, _) in &outcomes {
        assert_losses_close(&losses(steps), &losses(&reference));
    }
    let (rank0, rank1) = (&outcomes[0], &outcomes[1]);
    assert_eq!(
        weights(&rank0.2),
        weights(&rank1.2),
        "the copies stay equal"
    );
    for ((name, a), (_, b)) in weights(&rank0.2).iter().zip(weights(&reference_model)) {
        let gap = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(gap <= 1e-5, "{name}: {gap} from the one-peer weights");
    }
    assert!(rank0
        .1
        .as_ref()
        .is_some_and(|p| p.ends_with("checkpoint-5")));
    assert_eq!(rank1.1, None, "rank 1 writes no checkpoint");
    assert_eq!(checkpoint_records(&dir), [2, 4, 5], "each checkpoint once");
}

/// A free TCP port base with the two ports after it free too (coordinator, node 0, node 1).
fn free_ports() -> u16 {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = probe.local_addr().expect("addr").port();
        drop(probe);
        if base < 60000
            && (0..3).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no three free ports");
}

/// Starts node `rank` of a two-node run in `dir` (this test binary, [`node_process`]).
fn spawn_node(rank: usize, dir: &Path, port: u16, steps: usize, delay_ms: u64) -> Child {
    spawn_node_with_timeout(rank, dir, port, steps, delay_ms, 20)
}

/// [`spawn_node`] with the collective time limit `timeout_s`.
fn spawn_node_with_timeout(
    rank: usize,
    dir: &Path,
    port: u16,
    steps: usize,
    delay_ms: u64,
    timeout_s: u64,
) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args(["node_process", "--exact", "--nocapture", "--test-threads=1"])
        .env(NODE_RANK, rank.to_string())
        .env(NODE_DIR, dir)
        .env(NODE_PORT, port.to_string())
        .env(NODE_STEPS, steps.to_string())
        .env(NODE_STEP_DELAY_MS, delay_ms.to_string())
        .env(NODE_TIMEOUT_S, timeout_s.to_string())
        // The engine parks one runtime worker on its local server: leave it others.
        .env("TOKIO_WORKER_THREADS", "4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node")
}

fn losses_file(dir: &Path, rank: usize) -> PathBuf {
    dir.join(format!("losses-{rank}.json"))
}

/// One node of a two-node run, when the parent test sets [`NODE_RANK`]; a no-op otherwise.
#[test]
fn node_process() {
    let Ok(rank) = std::env::var(NODE_RANK) else {
        return;
    };
    let var = |name: &str| std::env::var(name).expect(name);
    let rank: usize = rank.parse().expect("rank");
    let dir = PathBuf::from(var(NODE_DIR));
    let port: u16 = var(NODE_PORT).parse().expect("port");
    let steps: usize = var(NODE_STEPS).parse().expect("steps");
    let delay = Duration::from_millis(var(NODE_STEP_DELAY_MS).parse().expect("delay"));
    let _serial = rng_lock();
    let config = TrainConfig {
        devices: vec!["cpu".into()],
        num_nodes: 2,
        node_rank: rank,
        coordinator: Some(format!("127.0.0.1:{port}")),
        collective_timeout_s: var(NODE_TIMEOUT_S).parse().expect("timeout"),
        ..config(&dir, PER_PEER, steps)
    };
    let peer = Peer::local_peers(&config).expect("peers").remove(0);
    let mut data = data_in_batches(samples(16, 5, None), PER_PEER).with_shard(peer.rank, 2);
    let mut done = Vec::new();
    let outcome = Trainer::new(config, Default::default(), loss)
        .expect("config")
        .with_peer(peer)
        .on_step(|report| {
            done.push(report.loss.expect("not skipped"));
            std::thread::sleep(delay);
        })
        .fit(fresh_model(), &mut data, Resume::No);
    if let Err(error) = outcome {
        eprintln!("NODE ERROR: {error}");
        std::process::exit(3);
    }
    let json = serde_json::to_string(&done).expect("json");
    std::fs::write(losses_file(&dir, rank), json).expect("write losses");
}

/// Waits for `child` at most `limit`; kills it and fails when it is still running.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> (i32, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return (status.code().unwrap_or(-1), stderr);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_processes_over_loopback_follow_one_peer_with_the_doubled_batch() {
    let _serial = rng_lock();
    let dirs = tempfile::tempdir().expect("tempdir");
    let (reference, _) = single_peer_run(&dirs.path().join("one"), STEPS, Resume::No);
    let dir = dirs.path().join("nodes");
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_ports();
    let mut nodes: Vec<Child> = (0..2)
        .map(|rank| spawn_node(rank, &dir, port, STEPS, 0))
        .collect();
    for (rank, node) in nodes.iter_mut().enumerate() {
        let (code, stderr) = wait_bounded(node, Duration::from_secs(120), "a node");
        assert_eq!(code, 0, "node {rank} failed:\n{stderr}");
    }
    for rank in 0..2 {
        let text = std::fs::read_to_string(losses_file(&dir, rank)).expect("losses");
        let node: Vec<f64> = serde_json::from_str(&text).expect("json");
        assert_losses_close(&node, &losses(&reference));
    }
    let written: Vec<usize> = list_checkpoints(&dir).into_iter().map(|(s, _)| s).collect();
    assert_eq!(written, [2, 4, 5]);
    assert_eq!(checkpoint_records(&dir), [2, 4, 5], "each checkpoint once");
}

#[test]
fn a_killed_peer_fails_the_other_in_bounded_time_and_the_last_checkpoint_resumes() {
    let _serial = rng_lock();
    let dirs = tempfile::tempdir().expect("tempdir");
    let steps = 8;
    let (reference, _) = single_peer_run(&dirs.path().join("one"), steps, Resume::No);
    let dir = dirs.path().join("nodes");
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_ports();
    let mut nodes: Vec<Child> = (0..2)
        .map(|rank| spawn_node(rank, &dir, port, steps, 300))
        .collect();

    wait_for_checkpoint(&dir);
    nodes[1].kill().expect("kill node 1");
    let _ = nodes[1].wait();
    let killed_at = Instant::now();
    let (code, stderr) = wait_bounded(&mut nodes[0], Duration::from_secs(90), "node 0");
    assert_ne!(code, 0, "node 0 cannot finish without its peer:\n{stderr}");
    assert!(
        stderr.contains("NODE ERROR: data-parallel training"),
        "a clear error:\n{stderr}"
    );
    let error = stderr.lines().find(|l| l.starts_with("NODE ERROR"));
    eprintln!(
        "node 0 failed {:?} after the kill: {error:?}",
        killed_at.elapsed()
    );

    // The last checkpoint resumes on one peer with the same global batch.
    let last = latest_checkpoint(&dir).expect("checkpoint");
    let done: usize = last
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("checkpoint-"))
        .and_then(|n| n.parse().ok())
        .expect("step");
    assert!(done < steps, "killed mid-run");
    let (resumed, _) = single_peer_run(&dir, steps, Resume::From(last));
    assert_eq!(resumed.first().map(|s| s.step), Some(done + 1));
    assert_losses_close(&losses(&resumed), &losses(&reference)[done..]);
}

/// Waits until `dir` holds a checkpoint (the run is past its first save).
fn wait_for_checkpoint(dir: &Path) {
    let start = Instant::now();
    while latest_checkpoint(dir).is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint yet"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stalled_peer_fails_the_other_at_the_time_limit() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let dir = dirs.path().join("nodes");
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_ports();
    let timeout_s = 3;
    let mut nodes: Vec<Child> = (0..2)
        .map(|rank| spawn_node_with_timeout(rank, &dir, port, 8, 300, timeout_s))
        .collect();
    wait_for_checkpoint(&dir);
    // Node 1 stops without closing anything: only the time limit can end node 0's wait.
    let pid = nodes[1].id().to_string();
    let stopped = Command::new("sh")
        .args(["-c", &format!("kill -STOP {pid}")])
        .status();
    assert!(stopped.is_ok_and(|s| s.success()), "SIGSTOP node 1");
    let stalled_at = Instant::now();
    let result = wait_bounded(&mut nodes[0], Duration::from_secs(60), "node 0");
    let waited = stalled_at.elapsed();
    nodes[1].kill().expect("kill node 1");
    let _ = nodes[1].wait();
    let (code, stderr) = result;
    assert_ne!(code, 0, "node 0 cannot finish without its peer:\n{stderr}");
    assert!(
        stderr.contains("no answer from the other peers within 3 s"),
        "the time limit ends the wait:\n{stderr}"
    );
    assert!(waited < Duration::from_secs(timeout_s + 15), "{waited:?}");
}

/// The bundled sample manifest served `global` records at a time (4 image tokens, 16 px).
fn sample_source(global: usize) -> vlm_train::DatasetSource {
    use vlm_data::{ChatTemplate, Dataset, EncoderConfig, LoaderOptions, SampleEncoder};
    use vlm_image::ImageProcessor;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let tokenizer =
        vlm_data::Tokenizer::from_model_dir(root.join("tokenizer/qwen2")).expect("tokenizer");
    let encoder = SampleEncoder::new(
        tokenizer,
        ChatTemplate::default(),
        EncoderConfig::new(4, 128),
    )
    .expect("encoder");
    let mut preprocessing = vlm_hf::PreprocessorConfig::siglip_default();
    preprocessing.size = vlm_hf::ImageSize::Exact {
        height: 16,
        width: 16,
    };
    let mut options = LoaderOptions::new(global);
    options.seed = 9;
    options.workers = 1;
    let sample = root.join("sample");
    let dataset = Dataset::open(
        sample.join("train.jsonl"),
        &sample,
        encoder,
        ImageProcessor::new(preprocessing),
        options,
    )
    .expect("sample manifest");
    vlm_train::DatasetSource::new(dataset)
}

#[test]
fn manifest_shards_are_the_rows_of_the_global_batch() {
    use vlm_train::TrainData;
    type B = vlm_testkit::TestBackend;
    let device = Default::default();
    let mut whole = sample_source(4);
    let mut shards = [
        sample_source(4).with_shard(0, 2),
        sample_source(4).with_shard(1, 2),
    ];
    let per_epoch = TrainData::<B>::batches_per_epoch(&whole);
    for shard in &shards {
        assert_eq!(TrainData::<B>::batches_per_epoch(shard), per_epoch);
    }
    for _ in 0..3 {
        let full = TrainData::<B>::next_batch(&mut whole, &device)
            .expect("batch")
            .expect("not the end");
        for (rank, shard) in shards.iter_mut().enumerate() {
            let part = TrainData::<B>::next_batch(shard, &device)
                .expect("batch")
                .expect("not the end");
            let rows = rank * 2..rank * 2 + 2;
            assert_eq!(part.samples, 2);
            let ids = |b: &vlm_train::TrainBatch<B>| b.inputs.input_ids.clone();
            assert_eq!(
                ids(&part).into_data(),
                ids(&full).slice([rows.clone()]).into_data()
            );
            assert_eq!(
                part.labels.clone().into_data(),
                full.labels.clone().slice([rows.clone()]).into_data()
            );
            let pixels = |b: &vlm_train::TrainBatch<B>| b.inputs.pixel_values.clone();
            let (part_pixels, full_pixels) = (pixels(&part), pixels(&full));
            assert_eq!(
                part_pixels.map(|p| p.into_data()),
                full_pixels.map(|p| p.slice([rows.clone()]).into_data()),
                "every sample has its image"
            );
            assert_eq!(
                TrainData::<B>::position(shard),
                TrainData::<B>::position(&whole),
                "positions are global"
            );
        }
    }
}
