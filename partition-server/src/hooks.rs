//! The partition server's seam for the deterministic simulation (xo-jepsen's
//! `simulation` test, which runs every process on a simulated network).
//! Production never installs it, and then channels to the coordinator are
//! `Endpoint::connect_lazy` over real TCP, as before it existed.
//!
//! Process-global (a `OnceLock`, set once, before any channel is made): the
//! simulation replaces the transport of the whole process.
//!
//! The server's wall clock (`partition::now_ms`: producer idle expiry,
//! time-based segment rolls and retention) is not replaced: its bounds are
//! hours to days, beyond any simulated run, so real time cannot change an
//! outcome there.

use std::sync::OnceLock;

use tonic::transport::{Channel, Endpoint};

/// What the simulation replaces.
#[derive(Clone, Copy, Debug)]
pub struct Hooks {
    /// Makes the lazily connected channel to the coordinator from its
    /// endpoint (address, timeouts already set).
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
