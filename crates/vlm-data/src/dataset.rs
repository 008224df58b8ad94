//! Streaming training batches from a manifest of conversations.
//!
//! The manifest is JSONL, one [`Conversation`] per line (blank lines ignored), image paths
//! relative to an image root or absolute. [`Dataset::open`] only indexes where each line starts
//! (a few bytes per record; records are parsed when visited), so manifests of any size stream.
//!
//! Each epoch visits the records in the order [`vlm_rng::epoch_order`] gives for `(seed, epoch)`
//! (the order every data source uses). A loader thread reads the lines in that order and hands
//! each record to a pool of worker threads,
//! which parse it, encode it ([`SampleEncoder`]) and decode + preprocess its image
//! ([`ImageProcessor`]); the loader puts the results back in order, collates full batches and
//! sends them through a bounded channel (`prefetch` batches), so the consumer never waits as
//! long as the CPU keeps up, and memory stays bounded when it does not.
//!
//! Bad records are skipped with their [`SkipReason`] (reported with the batch they were skipped
//! before, and counted), or stop the epoch with [`DataError::Invalid`] in strict mode. Every
//! batch says where to [resume](LoadedBatch::resume): [`Dataset::resume`] from that
//! [`Position`] yields exactly the batches that would have followed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use vlm_image::{ImageProcessor, PixelValues};
use vlm_rng::epoch_order;

use crate::batch::{collate, BatchError, Padding, Sample};
use crate::{Batch, Conversation, InvalidRecord, Position, SampleEncoder, SkipCounts, SkipReason};

/// How the loader batches, orders and parallelises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderOptions {
    /// Samples per batch.
    pub batch_size: usize,
    /// Seed of the shuffle (with the epoch number).
    pub seed: u64,
    /// Shuffle each epoch; when false, records come in manifest order.
    pub shuffle: bool,
    /// Drop the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Stop with an error at the first bad record instead of skipping it.
    pub strict: bool,
    /// Worker threads decoding images and encoding text.
    pub workers: usize,
    /// Finished batches buffered ahead of the consumer.
    pub prefetch: usize,
}

impl LoaderOptions {
    /// Batches of `batch_size`, shuffled with seed 0, one worker per CPU core, 4 batches of
    /// prefetch, bad records skipped, the last partial batch kept.
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            seed: 0,
            shuffle: true,
            drop_last: false,
            strict: false,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            prefetch: 4,
        }
    }

    /// Records in flight on the workers at most (decoded images waiting for their turn).
    fn window(&self) -> usize {
        2 * self.batch_size.max(4 * self.workers)
    }
}

/// Why the dataset could not be opened or an epoch could not go on.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The manifest could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A bad record in strict mode.
    #[error("manifest {} line {line}: {record}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        #[source]
        record: InvalidRecord,
    },
    /// The samples could not be collated (e.g. images of different sizes).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Options that cannot work (e.g. a batch size of 0).
    #[error("invalid loader options: {0}")]
    InvalidOptions(&'static str),
    /// A resume position past the end of the manifest.
    #[error("cannot resume at record {index}: the manifest has {len} records")]
    BadPosition { index: usize, len: usize },
    /// The threads could not be started.
    #[error("cannot start the data loader threads: {0}")]
    Threads(String),
    /// A worker panicked on a record (a bug: please report it with the record).
    #[error("the data loader panicked on manifest {} line {line}: {message}", path.display())]
    Panicked {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The loader thread ended without finishing the epoch.
    #[error("the data loader thread stopped unexpectedly")]
    LoaderStopped,
}

/// A record that was left out, with its manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRecord {
    /// 1-based line number in the manifest.
    pub line: usize,
    pub record: InvalidRecord,
}

/// A batch with where to resume after it and the records skipped just before it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedBatch {
    pub batch: Batch,
    /// Resuming here yields the batches that follow this one.
    pub resume: Position,
    /// Records skipped between the previous batch and this one.
    pub skipped: Vec<SkippedRecord>,
}

/// Where a record's line is in the manifest.
#[derive(Debug, Clone, Copy)]
struct LineSpan {
    line: usize,
    start: u64,
    len: usize,
}

/// What the loader thread and the workers share.
#[derive(Debug)]
struct Shared {
    manifest: PathBuf,
    image_root: PathBuf,
    spans: Vec<LineSpan>,
    encoder: SampleEncoder,
    images: ImageProcessor,
    options: LoaderOptions,
}

/// A manifest of conversations with everything needed to turn it into batches.
#[derive(Debug, Clone)]
pub struct Dataset {
    shared: Arc<Shared>,
    pool: Arc<rayon::ThreadPool>,
}

impl Dataset {
    /// Indexes `manifest` and starts `options.workers` worker threads (at least one). Images
    /// are found under `image_root` (absolute image paths are used as they are).
    pub fn open(
        manifest: impl AsRef<Path>,
        image_root: impl AsRef<Path>,
        encoder: SampleEncoder,
        images: ImageProcessor,
        options: LoaderOptions,
    ) -> Result<Self, DataError> {
        if options.batch_size == 0 {
            return Err(DataError::InvalidOptions("batch_size must be at least 1"));
        }
        let manifest = manifest.as_ref().to_path_buf();
        let spans = index_lines(&manifest).map_err(|source| DataError::Manifest {
            path: manifest.clone(),
            source,
        })?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.workers.max(1))
            .thread_name(|i| format!("vlm-data-worker-{i}"))
            .build()
            .map_err(|e| DataError::Threads(e.to_string()))?;
        let shared = Shared {
            manifest,
            image_root: image_root.as_ref().to_path_buf(),
            spans,
            encoder,
            images,
            options,
        };
        Ok(Self {
            shared: Arc::new(shared),
            pool: Arc::new(pool),
        })
    }

    /// Number of records (non-blank manifest lines, bad ones included).
    pub fn len(&self) -> usize {
        self.shared.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.spans.is_empty()
    }

    pub fn options(&self) -> &LoaderOptions {
        &self.shared.options
    }

    /// The record indices in the order epoch `epoch` visits them.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let options = &self.shared.options;
        if options.shuffle {
            epoch_order(self.len(), options.seed, epoch)
        } else {
            (0..self.len()).collect()
        }
    }

    /// The batches of epoch `epoch`, from its start.
    pub fn epoch(&self, epoch: u64) -> Batches {
        self.start(Position::start_of(epoch))
    }

    /// The batches of `from.epoch` after the first `from.index` records of its order.
    pub fn resume(&self, from: Position) -> Result<Batches, DataError> {
        if from.index > self.len() {
            return Err(DataError::BadPosition {
                index: from.index,
                len: self.len(),
            });
        }
        Ok(self.start(from))
    }

    fn start(&self, from: Position) -> Batches {
        let (tx, rx) = mpsc::sync_channel(self.shared.options.prefetch.max(1));
        let producer = Producer {
            shared: Arc::clone(&self.shared),
            pool: Arc::clone(&self.pool),
            epoch: from.epoch,
            tx,
            pending: Vec::new(),
            skipped: Vec::new(),
        };
        let order = self.order(from.epoch);
        let spawned = std::thread::Builder::new()
            .name("vlm-data-loader".into())
            .spawn(move || producer.run(&order, from.index));
        match spawned {
            Ok(handle) => Batches::new(rx, handle),
            Err(e) => Batches::failed(DataError::Threads(e.to_string())),
        }
    }
}

/// Byte spans of the non-blank lines of a file.
fn index_lines(path: &Path) -> io::Result<Vec<LineSpan>> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut spans = Vec::new();
    let mut buf = Vec::new();
    let (mut start, mut line) = (0u64, 0usize);
    loop {
        buf.clear();
        let len = vlm_hf::read_line_bounded(&mut reader, &mut buf, vlm_hf::MAX_RECORD_BYTES)
            .map_err(|e| io::Error::new(e.kind(), format!("line {}: {e}", line + 1)))?;
        if len == 0 {
            return Ok(spans);
        }
        line += 1;
        if !buf.trim_ascii().is_empty() {
            spans.push(LineSpan { line, start, len });
        }
        start += len as u64;
    }
}

impl Shared {
    /// Parses, encodes and loads the image of one record (on a worker thread).
    fn load(&self, line: usize, bytes: &[u8]) -> Result<Sample, SkippedRecord> {
        let skip = |record| SkippedRecord { line, record };
        let conv: Conversation = serde_json::from_slice(bytes).map_err(|e| {
            skip(InvalidRecord::new(
                format!("line {line}"),
                SkipReason::MalformedRecord,
                e.to_string(),
            ))
        })?;
        let encoded = self.encoder.encode(&conv).map_err(skip)?;
        let pixel_values = self.load_image(&conv).map_err(skip)?;
        Ok(Sample {
            encoded,
            pixel_values,
        })
    }

    /// Decodes and preprocesses the record's image, if it has one.
    fn load_image(&self, conv: &Conversation) -> Result<Option<PixelValues>, InvalidRecord> {
        let Some(image) = &conv.image else {
            return Ok(None);
        };
        let path = self.image_root.join(image);
        self.images
            .process_path(path)
            .map(Some)
            .map_err(|e| InvalidRecord::new(&conv.id, SkipReason::ImageUnreadable, e.to_string()))
    }
}

/// What the loader thread sends the consumer.
enum Message {
    Batch(LoadedBatch),
    /// The epoch is over; the records skipped after the last batch.
    Done(Vec<SkippedRecord>),
    Failed(DataError),
}

/// Why the loader thread stops early.
enum Halt {
    Failed(DataError),
    /// The consumer dropped its [`Batches`].
    Disconnected,
}

impl From<DataError> for Halt {
    fn from(e: DataError) -> Self {
        Self::Failed(e)
    }
}

/// A worker's answer for the record at one position of the epoch order: the sample or why it
/// was skipped, or the panic message.
type Loaded = Result<Result<Sample, SkippedRecord>, String>;

/// The loader thread of one epoch.
struct Producer {
    shared: Arc<Shared>,
    pool: Arc<rayon::ThreadPool>,
    epoch: u64,
    tx: SyncSender<Message>,
    /// Samples of the batch being filled.
    pending: Vec<Sample>,
    /// Records skipped since the last batch.
    skipped: Vec<SkippedRecord>,
}

impl Producer {
    fn run(mut self, order: &[usize], start: usize) {
        let message = match self.produce(order, start) {
            Ok(()) => Message::Done(std::mem::take(&mut self.skipped)),
            Err(Halt::Failed(e)) => Message::Failed(e),
            Err(Halt::Disconnected) => return,
        };
        // The consumer may be gone already; nothing is left to tell it then.
        let _ = self.tx.send(message);
    }

    /// Keeps up to `window` records in flight on the workers and accepts their results in
    /// epoch order.
    fn produce(&mut self, order: &[usize], start: usize) -> Result<(), Halt> {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Loaded)>();
        let mut file = File::open(&self.shared.manifest).map_err(|e| self.manifest_error(e))?;
        let window = self.shared.options.window();
        let mut ready = BTreeMap::new();
        let (mut submitted, mut accepted) = (start, start);
        while accepted < order.len() {
            while submitted < order.len() && submitted - accepted < window {
                self.submit(&mut file, submitted, order[submitted], &done_tx)?;
                submitted += 1;
            }
            let (position, loaded) = done_rx.recv().map_err(|_| DataError::LoaderStopped)?;
            ready.insert(position, loaded);
            while let Some(loaded) = ready.remove(&accepted) {
                self.accept(accepted, order[accepted], loaded)?;
                accepted += 1;
            }
        }
        self.finish(order.len())
    }

    /// Reads the line of `record` and has a worker load it.
    fn submit(
        &self,
        file: &mut File,
        position: usize,
        record: usize,
        done: &mpsc::Sender<(usize, Loaded)>,
    ) -> Result<(), Halt> {
        let span = self.shared.spans[record];
        let bytes = read_span(file, span).map_err(|e| self.manifest_error(e))?;
        let shared = Arc::clone(&self.shared);
        let done = done.clone();
        self.pool.spawn(move || {
            let loaded = catch_unwind(AssertUnwindSafe(|| shared.load(span.line, &bytes)))
                .map_err(|panic| panic_message(&panic));
            // The loader thread is gone only when the epoch was abandoned.
            let _ = done.send((position, loaded));
        });
        Ok(())
    }

    /// Takes the result of the record at `position` of the order (the next one).
    fn accept(&mut self, position: usize, record: usize, loaded: Loaded) -> Result<(), Halt> {
        let line = self.shared.spans[record].line;
        let result = loaded.map_err(|message| DataError::Panicked {
            path: self.shared.manifest.clone(),
            line,
            message,
        })?;
        match result {
            Ok(sample) => {
                self.pending.push(sample);
                if self.pending.len() == self.shared.options.batch_size {
                    self.emit(position + 1)?;
                }
                Ok(())
            }
            Err(skipped) if self.shared.options.strict => Err(Halt::Failed(DataError::Invalid {
                path: self.shared.manifest.clone(),
                line: skipped.line,
                record: skipped.record,
            })),
            Err(skipped) => {
                self.skipped.push(skipped);
                Ok(())
            }
        }
    }

    /// The last, partial batch (unless dropped).
    fn finish(&mut self, len: usize) -> Result<(), Halt> {
        if !self.pending.is_empty() && !self.shared.options.drop_last {
            self.emit(len)?;
        }
        Ok(())
    }

    /// Collates the pending samples and sends them; `index` is where to resume after them.
    fn emit(&mut self, index: usize) -> Result<(), Halt> {
        let pad_id = self.shared.encoder.pad_id();
        let batch = collate(std::mem::take(&mut self.pending), pad_id, Padding::Right)
            .map_err(DataError::from)?;
        let loaded = LoadedBatch {
            batch,
            resume: Position {
                epoch: self.epoch,
                index,
            },
            skipped: std::mem::take(&mut self.skipped),
        };
        self.tx
            .send(Message::Batch(loaded))
            .map_err(|_| Halt::Disconnected)
    }

    fn manifest_error(&self, source: io::Error) -> Halt {
        Halt::Failed(DataError::Manifest {
            path: self.shared.manifest.clone(),
            source,
        })
    }
}

/// Reads the bytes of one manifest line.
fn read_span(file: &mut File, span: LineSpan) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(span.start))?;
    let mut bytes = vec![0; span.len];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The batches of one epoch, loaded ahead on other threads. Dropping it stops the loading.
#[derive(Debug)]
pub struct Batches {
    rx: Option<Receiver<Message>>,
    loader: Option<JoinHandle<()>>,
    /// An error to yield before anything else (the threads could not start).
    failed: Option<DataError>,
    counts: SkipCounts,
}

impl Batches {
    fn new(rx: Receiver<Message>, loader: JoinHandle<()>) -> Self {
        Self {
            rx: Some(rx),
            loader: Some(loader),
            failed: None,
            counts: SkipCounts::default(),
        }
    }

    fn failed(error: DataError) -> Self {
        Self {
            rx: None,
            loader: None,
            failed: Some(error),
            counts: SkipCounts::default(),
        }
    }

    /// Records skipped so far in this epoch, per reason (complete once the iterator is done).
    pub fn skip_counts(&self) -> &SkipCounts {
        &self.counts
    }

    fn count(&mut self, skipped: &[SkippedRecord]) {
        for s in skipped {
            self.counts.add(s.record.reason);
        }
    }

    /// Stops the loader thread and waits for it.
    fn stop(&mut self) {
        self.rx = None;
        if let Some(loader) = self.loader.take() {
            // A panic of the loader thread was already reported as LoaderStopped.
            let _ = loader.join();
        }
    }
}

impl Iterator for Batches {
    type Item = Result<LoadedBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.failed.take() {
            return Some(Err(error));
        }
        let message = self.rx.as_ref()?.recv();
        match message {
            Ok(Message::Batch(batch)) => {
                self.count(&batch.skipped);
                Some(Ok(batch))
            }
            Ok(Message::Done(skipped)) => {
                self.count(&skipped);
                self.stop();
                None
            }
            Ok(Message::Failed(error)) => {
                self.stop();
                Some(Err(error))
            }
            Err(_) => {
                self.stop();
                Some(Err(DataError::LoaderStopped))
            }
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.stop();
    }
}
