//! The sources write only conversations the training loader accepts: the structure checks are
//! the loader's own ([`crate::skip`]), so a record is rejected here, counted per source, rather
//! than later in the middle of training.

use crate::conversation::Conversation;
use crate::skip::{check_structure, Purpose};

use super::{Skip, SkipReason};

/// `Ok` when `c` is a trainable conversation (starts with the user, alternates, ends with a
/// non-empty answer, one `<image>` in a user turn exactly when it has an image).
pub(crate) fn validate(c: &Conversation) -> Result<(), Skip> {
    check_structure(c, Purpose::Training)
        .map_err(|invalid| Skip::new(SkipReason::Invalid(invalid.reason), invalid.detail))
}
