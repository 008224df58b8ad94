//! Every reproducible "random" choice vlm makes: one seeded generator ([`SplitMix64`]) and the
//! record order of a training epoch ([`epoch_order`]).
//!
//! The generator is written out here, not taken from a library whose stream could change
//! between releases, so that a seed gives the same sampled tokens, the same sample data bytes,
//! the same per-step seeds and the same epoch order on every platform and version. No
//! dependencies: every crate that draws can depend on this one.

mod shuffle;
mod splitmix;

pub use shuffle::epoch_order;
pub use splitmix::SplitMix64;
