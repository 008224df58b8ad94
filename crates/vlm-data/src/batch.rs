//! Padding encoded samples into a rectangular [`Batch`] and turning it into tensors.
//!
//! A [`Batch`] is plain `Vec` data (cheap to build on worker threads, to send across channels
//! and to inspect in tests); [`Batch::to_tensors`] moves it onto a Burn device.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::{EncodedSample, IGNORE_INDEX};
use vlm_image::PixelValues;

/// Why samples could not be collated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// There is nothing to collate.
    #[error("cannot collate an empty batch")]
    Empty,
    /// A sample's image tokens and its pixels disagree (one without the other).
    #[error("sample {id:?}: {detail}")]
    ImageMismatch { id: String, detail: String },
    /// The images of a batch must all have one shape (the processor's crop / resize size).
    #[error("sample {id:?}: image shape {found:?} differs from {expected:?} earlier in the batch")]
    ImageShape {
        id: String,
        expected: [usize; 3],
        found: [usize; 3],
    },
}

/// Which side padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Pad after the tokens: training (positions stay 0..len).
    #[default]
    Right,
    /// Pad before the tokens: batched generation, so every prompt ends at the last column and
    /// the new tokens are appended in line.
    Left,
}

/// An encoded sample with the pixels of its image (if it has one).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub encoded: EncodedSample,
    /// Present exactly when `encoded.image_span` is.
    pub pixel_values: Option<PixelValues>,
}

/// A padded batch as plain data. Matrices are row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The samples' ids, in batch order.
    pub ids: Vec<String>,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Token ids; padding holds the pad id.
    pub input_ids: Vec<i64>,
    /// 1 over tokens, 0 over padding.
    pub attention_mask: Vec<i64>,
    /// Label ids, [`IGNORE_INDEX`] where nothing is learned (padding included).
    pub labels: Vec<i64>,
    /// `[n_images, 3, height, width]` values of the images, in sample order.
    pub pixel_values: Vec<f32>,
    /// `[3, height, width]` of each image; `None` when the batch has no image.
    pub image_shape: Option<[usize; 3]>,
    /// Which samples have an image (their pixels are in `pixel_values`, in order).
    pub has_image: Vec<bool>,
}

/// A [`Batch`] on a Burn device.
#[derive(Debug, Clone)]
pub struct BatchTensors<B: Backend> {
    /// `[batch, seq]`.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`.
    pub attention_mask: Tensor<B, 2, Int>,
    /// `[batch, seq]`.
    pub labels: Tensor<B, 2, Int>,
    /// `[n_images, 3, height, width]`; `None` when the batch has no image.
    pub pixel_values: Option<Tensor<B, 4>>,
}

impl Batch {
    /// Number of images in the batch.
    pub fn n_images(&self) -> usize {
        self.has_image.iter().filter(|&&h| h).count()
    }

    /// Copies the batch onto `device`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> BatchTensors<B> {
        let shape = [self.batch_size, self.seq_len];
        let int = |v: &[i64]| Tensor::from_data(TensorData::new(v.to_vec(), shape), device);
        let pixel_values = self.image_shape.map(|[c, h, w]| {
            let data = TensorData::new(self.pixel_values.clone(), [self.n_images(), c, h, w]);
            Tensor::from_data(data, device)
        });
        BatchTensors {
            input_ids: int(&self.input_ids),
            attention_mask: int(&self.attention_mask),
            labels: int(&self.labels),
            pixel_values,
        }
    }
}

/// Pads `samples` to their longest sequence on the `padding` side with `pad_id` (labels with
/// [`IGNORE_INDEX`], mask 0) and stacks their images.
pub fn collate(samples: Vec<Sample>, pad_id: u32, padding: Padding) -> Result<Batch, BatchError> {
    let seq_len = samples
        .iter()
        .map(|s| s.encoded.input_ids.len())
        .max()
        .ok_or(BatchError::Empty)?;
    let mut batch = Batch {
        ids: Vec::with_capacity(samples.len()),
        batch_size: samples.len(),
        seq_len,
        input_ids: Vec::with_capacity(samples.len() * seq_len),
        attention_mask: Vec::with_capacity(samples.len() * seq_len),
        labels: Vec::with_capacity(samples.len() * seq_len),
        pixel_values: Vec::new(),
        image_shape: None,
        has_image: Vec::with_capacity(samples.len()),
    };
    for sample in samples {
        push_image(&mut batch, &sample)?;
        push_row(&mut batch, sample.encoded, i64::from(pad_id), padding);
    }
    Ok(batch)
}

/// Appends one sample's padded ids, mask and labels.
fn push_row(batch: &mut Batch, encoded: EncodedSample, pad: i64, padding: Padding) {
    let len = encoded.input_ids.len();
    let fill = batch.seq_len - len;
    let ids = encoded.input_ids.iter().map(|&id| i64::from(id));
    pad_into(&mut batch.input_ids, ids, pad, fill, padding);
    pad_into(
        &mut batch.attention_mask,
        std::iter::repeat_n(1, len),
        0,
        fill,
        padding,
    );
    pad_into(
        &mut batch.labels,
        encoded.labels,
        IGNORE_INDEX,
        fill,
        padding,
    );
    batch.ids.push(encoded.id);
}

/// Appends `values` with `fill` copies of `pad` on the `padding` side.
fn pad_into(
    out: &mut Vec<i64>,
    values: impl IntoIterator<Item = i64>,
    pad: i64,
    fill: usize,
    padding: Padding,
) {
    if padding == Padding::Left {
        out.extend(std::iter::repeat_n(pad, fill));
    }
    out.extend(values);
    if padding == Padding::Right {
        out.extend(std::iter::repeat_n(pad, fill));
    }
}

/// Appends one sample's pixels after checking they match its image tokens and the batch shape.
fn push_image(batch: &mut Batch, sample: &Sample) -> Result<(), BatchError> {
    let id = &sample.encoded.id;
    let pixels = match (&sample.encoded.image_span, &sample.pixel_values) {
        (None, None) => {
            batch.has_image.push(false);
            return Ok(());
        }
        (Some(_), Some(pixels)) => pixels,
        (span, _) => {
            let detail = if span.is_some() {
                "image tokens without pixel values"
            } else {
                "pixel values without image tokens"
            };
            return Err(BatchError::ImageMismatch {
                id: id.clone(),
                detail: detail.into(),
            });
        }
    };
    let expected = *batch.image_shape.get_or_insert(pixels.shape);
    if pixels.shape != expected {
        return Err(BatchError::ImageShape {
            id: id.clone(),
            expected,
            found: pixels.shape,
        });
    }
    batch.pixel_values.extend_from_slice(&pixels.data);
    batch.has_image.push(true);
    Ok(())
}
