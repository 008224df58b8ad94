//! Images arrive inline, as `data:` URLs with base64 JPEG or PNG bytes; the server never
//! fetches a URL. Decoding goes through `vlm-image`'s image processor, whose limits are checked
//! against the image header before any pixel memory is allocated (decompression bombs).

use base64::Engine;
use vlm::image::{ImageProcessor, PixelValues};

use crate::error::ApiError;

/// Decodes and preprocesses the image of a `data:` URL for the vision tower.
pub fn pixels_from_url(url: &str, processor: &ImageProcessor) -> Result<PixelValues, ApiError> {
    let bytes = data_url_bytes(url)?;
    processor
        .process_bytes(&bytes, "image_url")
        .map_err(|err| ApiError::invalid_code(Some("messages"), "invalid_image", err.to_string()))
}

/// The bytes of a base64 `data:` URL of a JPEG or PNG image.
fn data_url_bytes(url: &str) -> Result<Vec<u8>, ApiError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(ApiError::invalid_code(
            Some("messages"),
            "image_url_not_supported",
            "image URLs are not fetched by this server: send the image inline as a data: URL \
             (data:image/png;base64,... or data:image/jpeg;base64,...)",
        ));
    }
    let Some((header, payload)) = url.strip_prefix("data:").and_then(|u| u.split_once(',')) else {
        return Err(invalid_image(
            "image_url must be a data: URL (data:image/png;base64,...)",
        ));
    };
    let Some(mime) = header.strip_suffix(";base64") else {
        return Err(invalid_image(
            "the image data: URL must be base64 (;base64,)",
        ));
    };
    if !matches!(mime, "image/png" | "image/jpeg" | "image/jpg") {
        return Err(invalid_image(format!(
            "the image is {mime:?}; only image/png and image/jpeg are supported"
        )));
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|err| invalid_image(format!("the image's base64 is invalid: {err}")))
}

fn invalid_image(message: impl Into<String>) -> ApiError {
    ApiError::invalid_code(Some("messages"), "invalid_image", message)
}
