//! Who a data-parallel peer is: its global rank, its device and how it reaches the others.

use std::time::Duration;

use burn_collective::{CollectiveConfig, PeerId};
use burn_communication::Address;

use crate::{ConfigError, TrainConfig};

/// One data-parallel peer of a run: rank `rank` of `world`, on this node's device `device`.
///
/// Ranks are global: node `n`'s local peer `i` is rank `n * devices_per_node + i`. Rank 0 is
/// the main peer: it writes checkpoints and logs, and its initial trainable weights are
/// those every peer starts from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Global rank, from 0.
    pub rank: usize,
    /// Peers in the whole run.
    pub world: usize,
    /// The device, as the configuration names it (`cuda:1`, `cpu`); `None`: the default.
    pub device: Option<String>,
    pub(crate) collective: CollectiveConfig,
    /// `host:port` of the coordinator of a multi-node run.
    pub(crate) coordinator: Option<String>,
    pub(crate) timeout: Duration,
}

impl Peer {
    /// The only peer of a run on one device (no collective at all).
    pub fn single() -> Self {
        Self {
            rank: 0,
            world: 1,
            device: None,
            collective: CollectiveConfig::default(),
            coordinator: None,
            timeout: Duration::from_secs(600),
        }
    }

    /// The peers this node runs, one per configured device, in device order.
    pub fn local_peers(config: &TrainConfig) -> Result<Vec<Peer>, ConfigError> {
        config.validate()?;
        let per_node = config.devices_per_node();
        let collective = collective_config(config)?;
        let timeout = Duration::from_secs(config.collective_timeout_s);
        Ok((0..per_node)
            .map(|i| Peer {
                rank: config.node_rank * per_node + i,
                world: config.world_size(),
                device: config.devices.get(i).cloned(),
                collective: collective.clone(),
                coordinator: (config.num_nodes > 1)
                    .then(|| config.coordinator.clone())
                    .flatten(),
                timeout,
            })
            .collect())
    }

    /// Whether this peer writes checkpoints and logs (rank 0).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    /// Whether other peers take part (more than one in the run).
    pub fn is_distributed(&self) -> bool {
        self.world > 1
    }

    pub(crate) fn id(&self) -> PeerId {
        PeerId(self.rank as u32)
    }
}

/// The engine's configuration of this node: its local peer count and, across nodes, the
/// coordinator and this node's tensor service.
fn collective_config(config: &TrainConfig) -> Result<CollectiveConfig, ConfigError> {
    let local = CollectiveConfig::default().with_num_devices(config.devices_per_node());
    if config.num_nodes == 1 {
        return Ok(local);
    }
    let coordinator = config.coordinator.clone().unwrap_or_default();
    let (host, port) = host_port("coordinator", &coordinator)?;
    let node_address = match &config.node_address {
        Some(address) => address.clone(),
        None => {
            let port = port as usize + 1 + config.node_rank;
            let port = u16::try_from(port).map_err(|_| {
                ConfigError::new("node_address", port, "the default port is past 65535")
            })?;
            format!("{host}:{port}")
        }
    };
    let (_, node_port) = host_port("node_address", &node_address)?;
    Ok(local
        .with_num_nodes(config.num_nodes as u32)
        .with_global_address(ws_address("coordinator", &coordinator)?)
        .with_node_address(ws_address("node_address", &node_address)?)
        .with_data_service_port(node_port))
}

/// Splits `host:port`, naming `field` when it does not parse.
pub(crate) fn host_port<'a>(
    field: &'static str,
    address: &'a str,
) -> Result<(&'a str, u16), ConfigError> {
    let parsed = address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .filter(|(host, _)| !host.is_empty());
    parsed.ok_or_else(|| ConfigError::new(field, format!("{address:?}"), "must be host:port"))
}

/// The engine's WebSocket address of `host:port`.
fn ws_address(field: &'static str, host_port: &str) -> Result<Address, ConfigError> {
    format!("ws://{host_port}")
        .parse()
        .map_err(|reason: String| ConfigError::new(field, format!("{host_port:?}"), reason))
}
