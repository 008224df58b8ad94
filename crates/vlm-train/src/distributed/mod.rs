//! Data-parallel training on Burn's collective engine (`burn-collective`).
//!
//! Every peer (one per device: threads on one machine, processes on several machines) trains
//! a copy of the model on its own shard of every global batch. After the micro-batches of a
//! step, the peers sum, in one all-reduce, the gradients of the trainable parameters and the
//! step's loss sum, supervised-token count and non-finite flag; every peer then divides by
//! the global token count, takes the same clipping and NaN decisions and the same AdamW step,
//! so the copies stay identical. Only the main peer (rank 0) writes checkpoints and logs.
//!
//! - [`Peer`]: a peer's rank, device and how it reaches the others, from the
//!   [`TrainConfig`](crate::TrainConfig) (`devices`, `num_nodes`, `node_rank`,
//!   `coordinator`).
//! - [`run_local_peers`]: runs one closure per local peer, each on its own thread.
//! - [`Trainer::with_peer`](crate::Trainer::with_peer): trains as one peer.
//! - Data sources shard themselves: [`ShuffledData::with_shard`](crate::ShuffledData::with_shard),
//!   [`DatasetSource::with_shard`](crate::DatasetSource::with_shard).

mod launch;
mod link;
mod packing;
mod peer;

pub use launch::{run_local_peers, PeerError};
pub(crate) use link::PeerLink;
pub(crate) use packing::{reduce_step, share_trainable, StepSums};
pub use peer::Peer;
