//! The server's counters, gauges and latency histograms, written in Prometheus' text
//! exposition format (version 0.0.4) for `GET /metrics`: requests by status code, time to
//! first token, inter-token latency, queue length, running sequences, the decode batch's
//! size and its bound, tokens generated, and the image-feature cache's hits and misses.
//!
//! The format is a few lines of text, written here by hand rather than through a metrics
//! library: `# HELP` and `# TYPE` for each family, then `name{labels} value` samples.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets, from 5 ms to 30 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// The sum of observations, in microseconds.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one latency.
    pub fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` samples of family `name`.
    fn write(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Everything `/metrics` reports but the queue length (read from the queue itself).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by HTTP status code.
    requests: Mutex<BTreeMap<u16, u64>>,
    /// From a request's arrival to its answer's first token.
    pub time_to_first_token: Histogram,
    /// Between consecutive tokens of one answer.
    pub inter_token_latency: Histogram,
    /// Answers being generated now.
    running: AtomicU64,
    /// Answers in the running decode batch.
    batch_size: AtomicU64,
    /// The most answers decoded together (`--max-batch-size`).
    max_batch_size: u64,
    /// Tokens generated since the server started.
    tokens_generated: AtomicU64,
    /// Images whose features came from the cache.
    image_cache_hits: AtomicU64,
    /// Images the vision tower encoded.
    image_cache_misses: AtomicU64,
}

impl Metrics {
    /// Empty metrics of a server decoding at most `max_batch_size` answers together.
    pub fn new(max_batch_size: usize) -> Self {
        Self {
            max_batch_size: max_batch_size as u64,
            ..Self::default()
        }
    }

    /// Records how many answers the running decode batch holds.
    pub fn set_batch_size(&self, answers: usize) {
        self.batch_size.store(answers as u64, Ordering::Relaxed);
    }

    /// Counts one answered request.
    pub fn count_request(&self, status: u16) {
        // A poisoned lock only means another thread panicked mid-increment: keep counting.
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry(status).or_default() += 1;
    }

    /// Records the image-feature cache's totals.
    pub fn set_image_cache(&self, hits: u64, misses: u64) {
        self.image_cache_hits.store(hits, Ordering::Relaxed);
        self.image_cache_misses.store(misses, Ordering::Relaxed);
    }

    /// Counts one generated token.
    pub fn count_token(&self) {
        self.tokens_generated.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks an answer as running until the guard is dropped.
    pub fn running(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self)
    }

    /// The text exposition, with `queued` requests waiting for the model.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "vlm_requests_total",
            "HTTP requests answered, by status code.",
            "counter",
        );
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for (code, count) in requests.iter() {
            let _ = writeln!(out, "vlm_requests_total{{code=\"{code}\"}} {count}");
        }
        drop(requests);
        self.time_to_first_token.write(
            &mut out,
            "vlm_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token.",
        );
        self.inter_token_latency.write(
            &mut out,
            "vlm_inter_token_latency_seconds",
            "Time between consecutive generated tokens of one answer.",
        );
        let gauges = [
            (
                "vlm_queue_length",
                "Requests waiting for the model.",
                queued as u64,
            ),
            (
                "vlm_running_sequences",
                "Answers being generated.",
                self.running.load(Ordering::Relaxed),
            ),
            (
                "vlm_batch_size",
                "Answers in the running decode batch.",
                self.batch_size.load(Ordering::Relaxed),
            ),
            (
                "vlm_max_batch_size",
                "The most answers decoded together.",
                self.max_batch_size,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let counters = [
            (
                "vlm_generated_tokens_total",
                "Tokens generated since the server started.",
                &self.tokens_generated,
            ),
            (
                "vlm_image_cache_hits_total",
                "Images whose features came from the image-feature cache.",
                &self.image_cache_hits,
            ),
            (
                "vlm_image_cache_misses_total",
                "Images the vision tower encoded.",
                &self.image_cache_misses,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

/// An answer counted in `vlm_running_sequences` while this lives.
pub struct Running<'a>(&'a Metrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
