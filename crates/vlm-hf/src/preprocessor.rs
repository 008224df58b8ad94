//! `preprocessor_config.json`: how a vision tower expects its images to be prepared.
//!
//! Hugging Face saves the image processor's settings next to the model. This module reads the
//! two processors the vlm vision towers use, `CLIPImageProcessor` and `SiglipImageProcessor`
//! (their `...Fast` variants and the legacy `CLIPFeatureExtractor` name parse to the same
//! settings), into one typed struct. Keys the file omits take the defaults the transformers
//! 4.57 constructors use, which differ between the two processors; unknown keys are ignored.
//! The legacy spellings transformers still accepts are accepted too: `size` / `crop_size` as a
//! bare integer or an `[height, width]` list, and `image_mean` / `image_std` as one number.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::HfError;

/// The image processor family a config belongs to; it decides the defaults and the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageProcessorType {
    /// `CLIPImageProcessor`: resize (shortest edge by default), center crop, rescale, normalize.
    Clip,
    /// `SiglipImageProcessor`: resize to an exact size, rescale, normalize; never crops.
    Siglip,
}

impl ImageProcessorType {
    /// The class name transformers writes into `image_processor_type`.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Clip => "CLIPImageProcessor",
            Self::Siglip => "SiglipImageProcessor",
        }
    }

    fn from_hf_name(name: &str) -> Option<Self> {
        match name {
            "CLIPImageProcessor" | "CLIPImageProcessorFast" | "CLIPFeatureExtractor" => {
                Some(Self::Clip)
            }
            "SiglipImageProcessor" | "SiglipImageProcessorFast" => Some(Self::Siglip),
            _ => None,
        }
    }
}

/// The `size` setting: what the resize step produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSize {
    /// `{"shortest_edge": n}`: scale so the shorter side is `n`, keeping the aspect ratio
    /// (the longer side is `floor(n * long / short)`, as transformers computes it).
    ShortestEdge(u32),
    /// `{"height": h, "width": w}`: resize to exactly `h` x `w`, ignoring the aspect ratio.
    Exact { height: u32, width: u32 },
}

/// The `crop_size` setting of a center crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropSize {
    pub height: u32,
    pub width: u32,
}

/// The PIL resampling filter (`resample`), numbered as `PIL.Image.Resampling` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Resample {
    /// 0
    Nearest,
    /// 1 (also called ANTIALIAS in old Pillow)
    Lanczos,
    /// 2
    Bilinear,
    /// 3, the default of both CLIP and SigLIP
    #[default]
    Bicubic,
    /// 4
    Box,
    /// 5
    Hamming,
}

impl Resample {
    /// The PIL number of the filter.
    pub fn pil_code(self) -> u8 {
        match self {
            Self::Nearest => 0,
            Self::Lanczos => 1,
            Self::Bilinear => 2,
            Self::Bicubic => 3,
            Self::Box => 4,
            Self::Hamming => 5,
        }
    }

    /// The filter with PIL number `code`, if it is one of the six classic filters.
    pub fn from_pil_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }
}

/// OpenAI CLIP's `image_mean` (transformers' `OPENAI_CLIP_MEAN`).
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI CLIP's `image_std` (transformers' `OPENAI_CLIP_STD`).
#[allow(clippy::excessive_precision)] // transformers' digits; they round to the same f32
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// transformers' `IMAGENET_STANDARD_MEAN` / `_STD`, SigLIP's defaults.
pub const IMAGENET_STANDARD_MEAN: [f32; 3] = [0.5, 0.5, 0.5];
/// See [`IMAGENET_STANDARD_MEAN`].
pub const IMAGENET_STANDARD_STD: [f32; 3] = [0.5, 0.5, 0.5];

/// The settings of a Hugging Face `preprocessor_config.json` (CLIP or SigLIP image processor).
///
/// Steps, in transformers' order: convert to RGB, resize to [`size`](Self::size) with
/// [`resample`](Self::resample), center crop to [`crop_size`](Self::crop_size) (CLIP only),
/// multiply by [`rescale_factor`](Self::rescale_factor), then `(x - mean) / std` per channel.
/// Each step runs only when its `do_*` flag is set.
///
/// Mean and std are kept as `f32` because transformers casts them to the image's float32 dtype
/// before normalising; `rescale_factor` stays `f64` because the rescale runs in float64.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct PreprocessorConfig {
    pub image_processor_type: ImageProcessorType,
    pub do_resize: bool,
    pub size: ImageSize,
    pub resample: Resample,
    /// Always `false` for SigLIP, whose processor has no crop step.
    pub do_center_crop: bool,
    pub crop_size: CropSize,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Whether the processor converts to RGB itself (SigLIP's default is off). Images loaded
    /// the way transformers' `load_image` does are RGB already, so this rarely matters.
    pub do_convert_rgb: bool,
}

impl PreprocessorConfig {
    /// The file name Hugging Face uses.
    pub const FILE_NAME: &'static str = "preprocessor_config.json";

    /// Reads `preprocessor_config.json` from a model folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        Self::from_file(dir.as_ref().join(Self::FILE_NAME))
    }

    /// Reads a preprocessor config from a JSON file of any name.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, HfError> {
        crate::read_config(path)
    }

    /// `CLIPImageProcessor()` with no arguments: shortest edge 224, bicubic, center crop 224,
    /// rescale 1/255, OpenAI CLIP mean/std, convert to RGB.
    pub fn clip_default() -> Self {
        Self {
            image_processor_type: ImageProcessorType::Clip,
            do_resize: true,
            size: ImageSize::ShortestEdge(224),
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_size: CropSize {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            do_convert_rgb: true,
        }
    }

    /// `SiglipImageProcessor()` with no arguments: 224 x 224 bicubic, rescale 1/255,
    /// mean/std 0.5, no crop.
    pub fn siglip_default() -> Self {
        Self {
            image_processor_type: ImageProcessorType::Siglip,
            do_resize: true,
            size: ImageSize::Exact {
                height: 224,
                width: 224,
            },
            resample: Resample::Bicubic,
            do_center_crop: false,
            // Unused (SigLIP never crops); kept equal to the resize size for clarity.
            crop_size: CropSize {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: IMAGENET_STANDARD_MEAN,
            image_std: IMAGENET_STANDARD_STD,
            do_convert_rgb: false,
        }
    }

    /// The defaults of the given processor family.
    pub fn default_for(kind: ImageProcessorType) -> Self {
        match kind {
            ImageProcessorType::Clip => Self::clip_default(),
            ImageProcessorType::Siglip => Self::siglip_default(),
        }
    }

    /// The `(height, width)` of every processed image when it does not depend on the input
    /// (a center crop, or an exact resize without crop); `None` when the output keeps the
    /// input's aspect ratio (shortest-edge resize without crop) or no resize happens.
    pub fn fixed_output_size(&self) -> Option<(u32, u32)> {
        if self.do_center_crop {
            return Some((self.crop_size.height, self.crop_size.width));
        }
        match (self.do_resize, self.size) {
            (true, ImageSize::Exact { height, width }) => Some((height, width)),
            _ => None,
        }
    }

    /// The `(height, width)` the resize step produces for an input of `height` x `width`
    /// (transformers' `get_resize_output_image_size`); the input size when `do_resize` is off.
    pub fn resize_output_size(&self, height: u32, width: u32) -> (u32, u32) {
        if !self.do_resize {
            return (height, width);
        }
        match self.size {
            ImageSize::Exact { height, width } => (height, width),
            ImageSize::ShortestEdge(short_target) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                // Python: int(requested_new_short * long / short), float64 true division.
                let new_long = if short == 0 {
                    0
                } else {
                    ((f64::from(short_target) * f64::from(long)) / f64::from(short)) as u32
                };
                if width <= height {
                    (new_long, short_target)
                } else {
                    (short_target, new_long)
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON form: every key optional, legacy spellings accepted.

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
enum SizeSpec {
    Int(u32),
    List(Vec<u32>),
    Dict(SizeDict),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
struct SizeDict {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shortest_edge: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    longest_edge: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
enum FloatOrList {
    One(f64),
    List(Vec<f64>),
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_processor_type: Option<String>,
    #[serde(default, skip_serializing)]
    feature_extractor_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    do_resize: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<SizeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resample: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    do_center_crop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crop_size: Option<SizeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    do_rescale: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rescale_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    do_normalize: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_mean: Option<FloatOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_std: Option<FloatOrList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    do_convert_rgb: Option<bool>,
}

impl SizeSpec {
    /// transformers' `get_size_dict(size, default_to_square)`.
    fn to_dict(&self, default_to_square: bool) -> Result<SizeDict, String> {
        Ok(match self {
            Self::Int(n) if default_to_square => SizeDict {
                height: Some(*n),
                width: Some(*n),
                ..SizeDict::default()
            },
            Self::Int(n) => SizeDict {
                shortest_edge: Some(*n),
                ..SizeDict::default()
            },
            Self::List(v) if v.len() == 2 => SizeDict {
                height: Some(v[0]),
                width: Some(v[1]),
                ..SizeDict::default()
            },
            Self::List(v) => return Err(format!("expected [height, width], got {v:?}")),
            Self::Dict(d) => d.clone(),
        })
    }
}

fn channels(name: &str, value: &FloatOrList) -> Result<[f32; 3], String> {
    match value {
        FloatOrList::One(x) => Ok([*x as f32; 3]),
        FloatOrList::List(v) if v.len() == 3 => Ok([v[0] as f32, v[1] as f32, v[2] as f32]),
        FloatOrList::List(v) => Err(format!(
            "`{name}` must have 3 values (one per RGB channel), got {}",
            v.len()
        )),
    }
}

fn positive(name: &str, n: u32) -> Result<u32, String> {
    if n == 0 {
        Err(format!("`{name}` must be positive, got 0"))
    } else {
        Ok(n)
    }
}

impl TryFrom<RawConfig> for PreprocessorConfig {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let type_name = raw
            .image_processor_type
            .as_deref()
            .or(raw.feature_extractor_type.as_deref())
            .ok_or(
                "no `image_processor_type` (or legacy `feature_extractor_type`): expected \
                 CLIPImageProcessor or SiglipImageProcessor",
            )?;
        let kind = ImageProcessorType::from_hf_name(type_name).ok_or_else(|| {
            format!(
                "unsupported image processor `{type_name}`: expected CLIPImageProcessor(Fast), \
                 CLIPFeatureExtractor or SiglipImageProcessor(Fast)"
            )
        })?;
        let mut config = Self::default_for(kind);

        if let Some(v) = raw.do_resize {
            config.do_resize = v;
        }
        if let Some(size) = &raw.size {
            let d = size.to_dict(false).map_err(|e| format!("`size`: {e}"))?;
            config.size = match (kind, d) {
                (
                    ImageProcessorType::Clip,
                    SizeDict {
                        shortest_edge: Some(n),
                        ..
                    },
                ) => ImageSize::ShortestEdge(positive("size.shortest_edge", n)?),
                (
                    _,
                    SizeDict {
                        height: Some(h),
                        width: Some(w),
                        ..
                    },
                ) => ImageSize::Exact {
                    height: positive("size.height", h)?,
                    width: positive("size.width", w)?,
                },
                (ImageProcessorType::Siglip, _) => {
                    return Err(format!(
                    "SiglipImageProcessor needs `size` as {{\"height\", \"width\"}}, got {size:?}"
                ))
                }
                (ImageProcessorType::Clip, _) => {
                    return Err(format!(
                        "CLIPImageProcessor needs `size` with `shortest_edge` or `height` and \
                         `width`, got {size:?}"
                    ))
                }
            };
        }
        if let Some(code) = raw.resample {
            config.resample = Resample::from_pil_code(code).ok_or_else(|| {
                format!(
                    "unsupported `resample` {code}: expected a PIL filter 0..=5 (NEAREST, \
                     LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING)"
                )
            })?;
        }
        // SiglipImageProcessor has no crop step: it ignores these keys.
        if kind == ImageProcessorType::Clip {
            if let Some(v) = raw.do_center_crop {
                config.do_center_crop = v;
            }
            if let Some(crop) = &raw.crop_size {
                let d = crop
                    .to_dict(true)
                    .map_err(|e| format!("`crop_size`: {e}"))?;
                match (d.height, d.width) {
                    (Some(h), Some(w)) => {
                        config.crop_size = CropSize {
                            height: positive("crop_size.height", h)?,
                            width: positive("crop_size.width", w)?,
                        }
                    }
                    _ => {
                        return Err(format!(
                            "`crop_size` needs `height` and `width`, got {crop:?}"
                        ))
                    }
                }
            }
        }
        if let Some(v) = raw.do_rescale {
            config.do_rescale = v;
        }
        if let Some(v) = raw.rescale_factor {
            config.rescale_factor = v;
        }
        if let Some(v) = raw.do_normalize {
            config.do_normalize = v;
        }
        if let Some(v) = &raw.image_mean {
            config.image_mean = channels("image_mean", v)?;
        }
        if let Some(v) = &raw.image_std {
            config.image_std = channels("image_std", v)?;
        }
        if config.do_normalize && config.image_std.contains(&0.0) {
            return Err(format!(
                "`image_std` must be non-zero, got {:?}",
                config.image_std
            ));
        }
        if let Some(v) = raw.do_convert_rgb {
            config.do_convert_rgb = v;
        }
        Ok(config)
    }
}

impl From<PreprocessorConfig> for RawConfig {
    fn from(c: PreprocessorConfig) -> Self {
        let size = match c.size {
            ImageSize::ShortestEdge(n) => SizeDict {
                shortest_edge: Some(n),
                ..SizeDict::default()
            },
            ImageSize::Exact { height, width } => SizeDict {
                height: Some(height),
                width: Some(width),
                ..SizeDict::default()
            },
        };
        let clip = c.image_processor_type == ImageProcessorType::Clip;
        RawConfig {
            image_processor_type: Some(c.image_processor_type.hf_name().to_string()),
            feature_extractor_type: None,
            do_resize: Some(c.do_resize),
            size: Some(SizeSpec::Dict(size)),
            resample: Some(u64::from(c.resample.pil_code())),
            do_center_crop: clip.then_some(c.do_center_crop),
            crop_size: clip.then_some(SizeSpec::Dict(SizeDict {
                height: Some(c.crop_size.height),
                width: Some(c.crop_size.width),
                ..SizeDict::default()
            })),
            do_rescale: Some(c.do_rescale),
            rescale_factor: Some(c.rescale_factor),
            do_normalize: Some(c.do_normalize),
            image_mean: Some(FloatOrList::List(
                c.image_mean.iter().map(|&x| f64::from(x)).collect(),
            )),
            image_std: Some(FloatOrList::List(
                c.image_std.iter().map(|&x| f64::from(x)).collect(),
            )),
            do_convert_rgb: Some(c.do_convert_rgb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PreprocessorConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn clip_defaults_fill_missing_keys() {
        let c = parse(r#"{"image_processor_type": "CLIPImageProcessor"}"#).unwrap();
        assert_eq!(c, PreprocessorConfig::clip_default());
    }

    #[test]
    fn siglip_defaults_fill_missing_keys_and_ignore_crop() {
        let c = parse(
            r#"{"image_processor_type": "SiglipImageProcessor", "do_center_crop": true,
                "crop_size": 100, "extra_key": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(c, PreprocessorConfig::siglip_default());
    }

    #[test]
    fn legacy_clip_feature_extractor_with_int_sizes() {
        // openai/clip-vit-large-patch14 style.
        let c = parse(
            r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true,
                "do_resize": true, "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#,
        )
        .unwrap();
        assert_eq!(c.size, ImageSize::ShortestEdge(224));
        assert_eq!(
            c.crop_size,
            CropSize {
                height: 224,
                width: 224
            }
        );
        assert_eq!(c.image_mean, OPENAI_CLIP_MEAN);
    }

    #[test]
    fn scalar_mean_and_list_size() {
        let c = parse(
            r#"{"image_processor_type": "SiglipImageProcessorFast", "image_mean": 0.25,
                "size": [384, 256], "resample": 2}"#,
        )
        .unwrap();
        assert_eq!(c.image_mean, [0.25; 3]);
        assert_eq!(
            c.size,
            ImageSize::Exact {
                height: 384,
                width: 256
            }
        );
        assert_eq!(c.resample, Resample::Bilinear);
    }

    #[test]
    fn invalid_configs_are_rejected_with_a_reason() {
        for (json, needle) in [
            (r#"{"size": 3}"#, "image_processor_type"),
            (
                r#"{"image_processor_type": "ViTImageProcessor"}"#,
                "ViTImageProcessor",
            ),
            (
                r#"{"image_processor_type": "SiglipImageProcessor", "size": 224}"#,
                "height",
            ),
            (
                r#"{"image_processor_type": "CLIPImageProcessor", "image_std": [1, 2]}"#,
                "3 values",
            ),
            (
                r#"{"image_processor_type": "CLIPImageProcessor", "resample": 7}"#,
                "resample",
            ),
            (
                r#"{"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 0}}"#,
                "positive",
            ),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn serialises_to_hf_keys_and_back() {
        for c in [
            PreprocessorConfig::clip_default(),
            PreprocessorConfig::siglip_default(),
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert!(json.contains(c.image_processor_type.hf_name()), "{json}");
            assert_eq!(parse(&json).unwrap(), c);
        }
    }

    #[test]
    fn shortest_edge_output_size_matches_transformers() {
        let c = PreprocessorConfig::clip_default();
        // 320x200 (W x H) -> 358x224, as in the image_processor fixture.
        assert_eq!(c.resize_output_size(200, 320), (224, 358));
        assert_eq!(c.resize_output_size(320, 200), (358, 224));
        assert_eq!(c.resize_output_size(100, 100), (224, 224));
        assert_eq!(c.fixed_output_size(), Some((224, 224)));
    }
}
