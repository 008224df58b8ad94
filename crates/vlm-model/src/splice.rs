//! Splicing image features into a prompt's token embeddings at the placeholder positions.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::ModelError;

/// Where every position of a batch's spliced embeddings comes from: its own token
/// embedding, or the next image feature in order (Hugging Face's `masked_scatter`).
///
/// Built from the token ids on the host, so that each sample can hold its placeholder runs
/// anywhere and any number of whole images (none for a text-only sample); the sequence
/// length does not change, so attention mask and position ids stay valid as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplicePlan {
    /// For flat position `sample * seq + j`: its row in `[token embeddings; image features]`
    /// flattened to `[batch * seq + images * tokens_per_image, hidden]`.
    sources: Vec<i64>,
    /// How many images the placeholders stand for.
    images: usize,
}

impl SplicePlan {
    /// Plans the splice of `ids` (`batch` rows of `seq` ids, row-major) where every
    /// `placeholder` id takes the next image feature. A sample whose placeholder count is
    /// not a multiple of `tokens_per_image` (never 0) is an error naming it.
    pub(crate) fn new(
        ids: &[i64],
        seq: usize,
        placeholder: i64,
        tokens_per_image: usize,
    ) -> Result<Self, ModelError> {
        let text_rows = ids.len() as i64;
        let mut sources = Vec::with_capacity(ids.len());
        let mut next_feature = text_rows;
        for (sample, row) in ids.chunks(seq).enumerate() {
            let before = next_feature;
            for (column, &id) in row.iter().enumerate() {
                if id == placeholder {
                    sources.push(next_feature);
                    next_feature += 1;
                } else {
                    sources.push((sample * seq + column) as i64);
                }
            }
            check_whole_images(sample, (next_feature - before) as usize, tokens_per_image)?;
        }
        let features = (next_feature - text_rows) as usize;
        Ok(Self {
            sources,
            images: features / tokens_per_image,
        })
    }

    /// How many images the placeholders stand for.
    pub(crate) fn images(&self) -> usize {
        self.images
    }

    /// Token embeddings `[batch, seq, hidden]` with the placeholder rows replaced, in order,
    /// by `image_features` `[images, tokens_per_image, hidden]` (`None` when there are no
    /// images). Gradients flow to both inputs.
    pub(crate) fn apply<B: Backend>(
        &self,
        embeds: Tensor<B, 3>,
        image_features: Option<Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let Some(features) = image_features else {
            return embeds;
        };
        let [batch, seq, hidden] = embeds.dims();
        let [images, tokens, _] = features.dims();
        // In the embeddings' float type, as transformers casts the image features.
        let features = features.cast(embeds.dtype());
        let rows = Tensor::cat(
            vec![
                embeds.reshape([batch * seq, hidden]),
                features.reshape([images * tokens, hidden]),
            ],
            0,
        );
        let device = rows.device();
        let sources = TensorData::new(self.sources.clone(), [self.sources.len()]);
        let sources = Tensor::<B, 1, Int>::from_data(sources, &device);
        rows.select(0, sources).reshape([batch, seq, hidden])
    }
}

fn check_whole_images(
    sample: usize,
    found: usize,
    tokens_per_image: usize,
) -> Result<(), ModelError> {
    if found.is_multiple_of(tokens_per_image) {
        return Ok(());
    }
    Err(ModelError::PlaceholderCount {
        sample,
        found,
        tokens_per_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: i64 = 9;

    #[test]
    fn placeholders_take_features_in_order_across_samples() {
        let ids = [
            1, IMG, IMG, 2, /* */ 0, 3, IMG, IMG, /* */ 4, 5, 6, 7,
        ];
        let plan = SplicePlan::new(&ids, 4, IMG, 2).expect("plan");
        assert_eq!(plan.images(), 2);
        assert_eq!(plan.sources, [0, 12, 13, 3, 4, 5, 14, 15, 8, 9, 10, 11]);
    }

    #[test]
    fn several_images_in_one_sample() {
        let plan = SplicePlan::new(&[IMG, IMG, 1, IMG, IMG], 5, IMG, 2).expect("plan");
        assert_eq!(plan.images(), 2);
    }

    #[test]
    fn a_partial_image_names_the_sample() {
        let ids = [1, IMG, IMG, 2, /* */ 3, IMG, IMG, IMG];
        let err = SplicePlan::new(&ids, 4, IMG, 2).expect_err("3 placeholders");
        assert!(matches!(
            err,
            ModelError::PlaceholderCount {
                sample: 1,
                found: 3,
                tokens_per_image: 2
            }
        ));
    }
}
