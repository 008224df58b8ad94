//! Where a data source stands in its epochs, saved in training checkpoints so that a resumed
//! run asks for exactly the data the interrupted one would have seen next.

use serde::{Deserialize, Serialize};

/// Where a data source stands: `index` units of epoch `epoch`'s order are consumed. The unit is
/// the source's choice: records for a [`Dataset`](crate::Dataset) (pass the position to
/// [`Dataset::resume`](crate::Dataset::resume)), samples or batches for other sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Position {
    /// The epoch.
    pub epoch: u64,
    /// How far into the epoch, in the source's units.
    pub index: usize,
}

impl Position {
    /// The start of epoch `epoch`.
    pub fn start_of(epoch: u64) -> Self {
        Self { epoch, index: 0 }
    }
}
