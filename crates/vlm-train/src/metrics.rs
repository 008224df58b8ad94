//! `metrics.jsonl` (one JSON object a line) and the loss curve drawn from it at the end.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// File name of the metrics log in the output folder.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// File name of the loss curve in the output folder.
pub const LOSS_CURVE_FILE: &str = "loss.png";

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetricsRecord {
    /// The periodic training log (every `logging_steps`).
    Log {
        /// Optimizer steps done.
        step: usize,
        /// Epochs done, fractional.
        epoch: f64,
        /// Mean loss of the steps since the last log (skipped steps excluded).
        loss: Option<f64>,
        /// Learning rate of each optimizer group at the last step.
        lr: BTreeMap<String, f64>,
        /// Global gradient norm (before clipping) at the last step.
        grad_norm: Option<f64>,
        /// Real tokens per second since the last log.
        tokens_per_s: f64,
        /// Images per second since the last log.
        images_per_s: f64,
        /// Estimated seconds to the end of the run.
        eta_s: f64,
    },
    /// A step that was skipped, or a micro-batch left out, and why.
    Skipped {
        /// The step (1-based) it happened in.
        step: usize,
        /// What happened.
        reason: String,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: usize,
        /// Its folder.
        path: PathBuf,
    },
    /// The run resumed from a checkpoint.
    Resumed {
        /// The checkpoint's step.
        step: usize,
        /// Its folder.
        path: PathBuf,
    },
}

impl MetricsRecord {
    fn step(&self) -> usize {
        match self {
            Self::Log { step, .. }
            | Self::Skipped { step, .. }
            | Self::Checkpoint { step, .. }
            | Self::Resumed { step, .. } => *step,
        }
    }
}

/// Appends records to `metrics.jsonl`, one flushed line each (or, on a data-parallel peer
/// other than the main one, nowhere).
///
/// A failed write (a full disk) does not interrupt the caller: the log keeps the error and
/// writes nothing more, and the trainer, at the end of the step, writes a checkpoint before
/// stopping with it ([`take_failure`](Self::take_failure)).
pub struct MetricsLog {
    path: PathBuf,
    file: Option<File>,
    failure: Option<TrainError>,
}

impl MetricsLog {
    /// Opens `output_dir/metrics.jsonl` for appending; when resuming from step `from_step`,
    /// first drops the lines of later steps (what the interrupted run logged after its last
    /// checkpoint, which the resumed run logs again).
    pub fn open(output_dir: &Path, from_step: Option<usize>) -> Result<Self, TrainError> {
        let path = output_dir.join(METRICS_FILE);
        match from_step {
            Some(step) => {
                let kept: Vec<String> = read_records(&path)
                    .into_iter()
                    .filter(|(record, _)| record.step() <= step)
                    .map(|(_, line)| line)
                    .collect();
                let mut text = kept.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                fs::write(&path, text).map_err(|e| TrainError::write(&path, e))?;
            }
            None => {
                fs::write(&path, "").map_err(|e| TrainError::write(&path, e))?;
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::write(&path, e))?;
        Ok(Self {
            path,
            file: Some(file),
            failure: None,
        })
    }

    /// A log that writes nothing: what peers other than the main one keep (the main peer
    /// writes `output_dir/metrics.jsonl`, the path this one reports).
    pub fn disabled(output_dir: &Path) -> Self {
        Self {
            path: output_dir.join(METRICS_FILE),
            file: None,
            failure: None,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; after a failed write, keeps the error and drops this record and
    /// every later one.
    pub fn write(&mut self, record: &MetricsRecord) {
        let Some(file) = &mut self.file else {
            return;
        };
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            self.failure = Some(TrainError::write(&self.path, e));
            self.file = None;
        }
    }

    /// The error of the write that failed, if one did (once).
    pub fn take_failure(&mut self) -> Option<TrainError> {
        self.failure.take()
    }
}

/// Every parseable record of a metrics file, with its line.
pub fn read_records(path: &Path) -> Vec<(MetricsRecord, String)> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| Some((serde_json::from_str(&line).ok()?, line)))
        .collect()
}

/// Draws the logged losses of `metrics` against the step into a PNG at `out`; `None` when
/// fewer than two losses were logged.
pub fn plot_loss_curve(metrics: &Path, out: &Path) -> Result<Option<PathBuf>, TrainError> {
    let points: Vec<(f64, f64)> = read_records(metrics)
        .into_iter()
        .filter_map(|(record, _)| match record {
            MetricsRecord::Log {
                step,
                loss: Some(loss),
                ..
            } if loss.is_finite() => Some((step as f64, loss)),
            _ => None,
        })
        .collect();
    if points.len() < 2 {
        return Ok(None);
    }
    let (width, height) = (800u32, 480u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    let (x_min, x_max) = (
        points[0].0,
        points[points.len() - 1].0.max(points[0].0 + 1.0),
    );
    let y_max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let y_min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min).min(0.0);
    let y_max = if y_max > y_min {
        y_max * 1.05
    } else {
        y_min + 1.0
    };
    let (left, right, top, bottom) = (70i32, 20i32, 30i32, 40i32);
    let plot_error = |e: String| TrainError::write(out, std::io::Error::other(e));
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let area = root.margin(top as u32, bottom as u32, left as u32, right as u32);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(x_min..x_max, y_min..y_max)
            .map_err(|e| plot_error(e.to_string()))?;
        let grid = RGBColor(225, 225, 225);
        for i in 0..=4 {
            let y = y_min + (y_max - y_min) * i as f64 / 4.0;
            let x = x_min + (x_max - x_min) * i as f64 / 4.0;
            chart
                .draw_series(LineSeries::new([(x_min, y), (x_max, y)], grid))
                .map_err(|e| plot_error(e.to_string()))?;
            chart
                .draw_series(LineSeries::new([(x, y_min), (x, y_max)], grid))
                .map_err(|e| plot_error(e.to_string()))?;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                BLUE.stroke_width(2),
            ))
            .map_err(|e| plot_error(e.to_string()))?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    // Axis labels in a built-in pixel font (the plotting crate is built without fonts).
    let (plot_w, plot_h) = (width as i32 - left - right, height as i32 - top - bottom);
    let mut canvas = Canvas {
        buffer: &mut buffer,
        width: width as i32,
        height: height as i32,
    };
    for i in 0..=4 {
        let y = y_min + (y_max - y_min) * i as f64 / 4.0;
        let py = top + plot_h - plot_h * i / 4;
        canvas.text(&format_number(y), 4, py - 7, 2);
        let x = x_min + (x_max - x_min) * i as f64 / 4.0;
        let label = format!("{}", x.round() as i64);
        let px = left + plot_w * i / 4 - (label.len() as i32 * 6);
        canvas.text(&label, px.max(0), top + plot_h + 8, 2);
    }
    canvas.text("loss", left, 6, 2);
    canvas.text("step", width as i32 - right - 48, height as i32 - 16, 2);
    let png = image::RgbImage::from_raw(width, height, buffer).expect("buffer size matches");
    png.save_with_format(out, image::ImageFormat::Png)
        .map_err(|e| plot_error(e.to_string()))?;
    Ok(Some(out.to_path_buf()))
}

fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(0.01..10000.0).contains(&magnitude) {
        format!("{value:.1e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

struct Canvas<'a> {
    buffer: &'a mut [u8],
    width: i32,
    height: i32,
}

impl Canvas<'_> {
    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` wide.
    fn text(&mut self, text: &str, x: i32, y: i32, scale: i32) {
        for (i, ch) in text.chars().enumerate() {
            let Some(rows) = glyph(ch) else { continue };
            let cx = x + i as i32 * 6 * scale;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) != 0 {
                        self.block(cx + col * scale, y + row as i32 * scale, scale);
                    }
                }
            }
        }
    }

    fn block(&mut self, x: i32, y: i32, size: i32) {
        for dy in 0..size {
            for dx in 0..size {
                let (px, py) = (x + dx, y + dy);
                if (0..self.width).contains(&px) && (0..self.height).contains(&py) {
                    let i = ((py * self.width + px) * 3) as usize;
                    self.buffer[i..i + 3].copy_from_slice(&[40, 40, 40]);
                }
            }
        }
    }
}

/// 5 x 7 glyphs of the characters axis labels use.
fn glyph(ch: char) -> Option<[u8; 7]> {
    Some(match ch {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        's' => [0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        _ => return None,
    })
}
