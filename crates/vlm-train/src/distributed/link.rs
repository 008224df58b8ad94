//! A peer's connection to the others through `burn-collective`: registration, the summing
//! all-reduce, and a time limit on both, which the engine does not have (a dead peer would
//! otherwise leave the others waiting forever).

use std::marker::PhantomData;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{CollectiveError, PeerId, ReduceOperation};

use crate::distributed::peer::host_port;
use crate::distributed::Peer;
use crate::TrainError;

/// The longest a peer waits to unregister at the end of a run.
const LEAVE_LIMIT: Duration = Duration::from_secs(30);

/// A registered peer of a data-parallel run on backend `B` (an inner, non-autodiff backend).
pub(crate) struct PeerLink<B: Backend> {
    id: PeerId,
    timeout: Duration,
    backend: PhantomData<B>,
}

impl<B: Backend> PeerLink<B> {
    /// Registers `peer` on `device` and waits (at most the peer's time limit) until every
    /// peer of the run has. Node 0's first peer starts the coordinator first.
    pub(crate) fn join(peer: &Peer, device: B::Device) -> Result<Self, TrainError> {
        if let Some(address) = peer.coordinator_to_start() {
            start_coordinator(&address)?;
        }
        let (id, config) = (peer.id(), peer.collective.clone());
        let what = format!("registering peer {} of {}", peer.rank, peer.world);
        with_limit(peer.timeout, what, move || {
            burn_collective::register::<B>(id, device, config)
        })?;
        Ok(Self {
            id,
            timeout: peer.timeout,
            backend: PhantomData,
        })
    }

    /// The element-wise sum of `tensor` over every peer; `what` names the exchange in errors.
    pub(crate) fn sum(&self, tensor: Tensor<B, 1>, what: &str) -> Result<Tensor<B, 1>, TrainError> {
        let id = self.id;
        let primitive = tensor.into_primitive().tensor();
        let summed = with_limit(self.timeout, what.to_string(), move || {
            burn_collective::all_reduce::<B>(id, primitive, ReduceOperation::Sum)
        })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }

    /// Unregisters once the run is over, waiting at most [`LEAVE_LIMIT`]. Best effort: the
    /// training is done, so a failure (the coordinator's process, node 0, may already have
    /// ended) is only reported.
    pub(crate) fn leave(self) {
        let id = self.id;
        let limit = self.timeout.min(LEAVE_LIMIT);
        let left = with_limit(limit, "leaving the collective".into(), move || {
            burn_collective::finish_collective::<B>(id)
        });
        if let Err(error) = left {
            eprintln!("warning: {error}");
        }
    }
}

impl Peer {
    /// The coordinator this peer must start: node 0's first peer of a multi-node run.
    fn coordinator_to_start(&self) -> Option<String> {
        self.coordinator.clone().filter(|_| self.rank == 0)
    }
}

/// Runs Burn's collective orchestrator on `host:port`'s port, on a thread of its own for
/// the life of the process.
fn start_coordinator(address: &str) -> Result<(), TrainError> {
    let (_, port) = host_port("coordinator", address)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TrainError::Collective(format!("cannot start the coordinator: {e}")))?;
    std::thread::Builder::new()
        .name("vlm-coordinator".into())
        .spawn(move || runtime.block_on(burn_collective::start_global_orchestrator(port)))
        .map_err(|e| TrainError::Collective(format!("cannot start the coordinator: {e}")))?;
    Ok(())
}

/// Runs the blocking engine call `call` on a helper thread and waits at most `limit` for it:
/// past the limit the run fails (the helper stays blocked until the process ends).
fn with_limit<T: Send + 'static>(
    limit: Duration,
    what: String,
    call: impl FnOnce() -> Result<T, CollectiveError> + Send + 'static,
) -> Result<T, TrainError> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("vlm-collective".into())
        .spawn(move || {
            let _ = sender.send(call());
        })
        .map_err(|e| TrainError::Collective(format!("{what}: cannot start a thread: {e}")))?;
    match receiver.recv_timeout(limit) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(CollectiveError::LocalServerMissing)) => Err(TrainError::Collective(format!(
            "{what}: a peer is gone (the collective engine stopped when it lost a peer's \
             connection)"
        ))),
        Ok(Err(error)) => Err(TrainError::Collective(format!(
            "{what}: the collective engine failed: {error:?}"
        ))),
        Err(RecvTimeoutError::Timeout) => Err(TrainError::Collective(format!(
            "{what}: no answer from the other peers within {} s (collective_timeout_s): a \
             peer has stopped, hangs or cannot be reached",
            limit.as_secs_f64()
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(TrainError::Collective(format!(
            "{what}: the collective engine stopped (a peer's connection was lost)"
        ))),
    }
}
