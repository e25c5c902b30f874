//! The client library's seam for the deterministic simulation (xo-jepsen's
//! `simulation` test, which runs clients and servers on a simulated
//! network). Applications never install it, and then every channel is
//! `Endpoint::connect_lazy` over real TCP, as before it existed.
//!
//! Process-global (a `OnceLock`, set once, before any channel is made): the
//! simulation replaces the transport of the whole process, and every
//! producer, consumer and admin makes its channels in one place
//! (`cluster::Cluster::channel`).

use std::sync::OnceLock;

use tonic::transport::{Channel, Endpoint};

/// What the simulation replaces.
#[derive(Clone, Copy, Debug)]
pub struct Hooks {
    /// Makes the lazily connected channel to a coordinator or partition
    /// server from its endpoint (address, timeouts, keep-alive already set).
    pub connect_lazy: fn(Endpoint) -> Channel,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Installs `hooks` for the rest of the process; refused (returning them)
/// when hooks are already installed.
pub fn install(hooks: Hooks) -> Result<(), Hooks> {
    HOOKS.set(hooks)
}

/// `endpoint.connect_lazy()`, unless the simulation routes channels itself.
pub(crate) fn connect_lazy(endpoint: Endpoint) -> Channel {
    match HOOKS.get() {
        Some(hooks) => (hooks.connect_lazy)(endpoint),
        None => endpoint.connect_lazy(),
    }
}
