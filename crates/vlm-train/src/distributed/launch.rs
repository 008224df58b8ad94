//! Running the local peers of a node, one thread each.

use std::error::Error;

use crate::distributed::Peer;
use crate::TrainError;

/// An error a peer's closure returns to [`run_local_peers`]: it can carry a [`TrainError`]
/// and tell whether the peer failed only waiting for another ([`TrainError::Collective`]).
pub trait PeerError: Send {
    /// The error of a peer that could not run (its thread failed to start or panicked).
    fn from_train(error: TrainError) -> Self;
    /// Whether this is a failure to exchange with the other peers.
    fn is_collective(&self) -> bool;
}

impl PeerError for TrainError {
    fn from_train(error: TrainError) -> Self {
        error
    }

    fn is_collective(&self) -> bool {
        matches!(self, TrainError::Collective(_))
    }
}

impl PeerError for Box<dyn Error + Send + Sync> {
    fn from_train(error: TrainError) -> Self {
        Box::new(error)
    }

    fn is_collective(&self) -> bool {
        self.downcast_ref::<TrainError>()
            .is_some_and(PeerError::is_collective)
    }
}

/// Runs `run(peer)` for every peer in `peers` at once, each on its own thread (the peers of
/// one node: one per device), and returns their results in rank order.
///
/// When peers fail, the error returned is that of the first peer whose failure is not a
/// collective one (the cause: the others then fail waiting for it), else the first.
pub fn run_local_peers<T, E, F>(peers: Vec<Peer>, run: F) -> Result<Vec<T>, E>
where
    T: Send,
    E: PeerError,
    F: Fn(Peer) -> Result<T, E> + Sync,
{
    let results: Vec<Result<T, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = peers
            .into_iter()
            .map(|peer| {
                let rank = peer.rank;
                let run = &run;
                let handle = std::thread::Builder::new()
                    .name(format!("vlm-peer-{rank}"))
                    .spawn_scoped(scope, move || run(peer));
                (rank, handle)
            })
            .collect();
        handles
            .into_iter()
            .map(|(rank, handle)| match handle {
                Ok(handle) => handle.join().unwrap_or_else(|_| {
                    Err(E::from_train(TrainError::Peer(format!(
                        "peer {rank} panicked"
                    ))))
                }),
                Err(e) => Err(E::from_train(TrainError::Peer(format!(
                    "cannot start the thread of peer {rank}: {e}"
                )))),
            })
            .collect()
    });
    let (mut values, mut errors) = (Vec::new(), Vec::new());
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        return Ok(values);
    }
    let cause = errors.iter().position(|e| !e.is_collective()).unwrap_or(0);
    Err(errors.swap_remove(cause))
}
