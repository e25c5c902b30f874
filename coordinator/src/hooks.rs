//! The coordinator's seams for the deterministic simulation (xo-jepsen's
//! `simulation` test, which runs every process on a simulated network and
//! clock). Production never installs them, and then every call below does
//! exactly what the code did before they existed: channels are
//! `Endpoint::connect_lazy` over real TCP, time is `SystemTime::now()`.
//!
//! They are process-global (a `OnceLock`, set once, before any channel is
//! made) because the simulation replaces the transport and the clock of the
//! whole process, and threading them through every constructor would touch
//! every caller for the sake of one test binary.

use std::sync::OnceLock;

use tonic::transport::{Channel, Endpoint};

/// What the simulation replaces.
#[derive(Clone, Copy, Debug)]
pub struct Hooks {
    /// Makes the lazily connected channel to a partition server from its
    /// endpoint (address, timeouts already set).
    pub connect_lazy: fn(Endpoint) -> Channel,
    /// Milliseconds since the Unix epoch: the clock transaction timeouts,
    /// start times and idle expiry are measured on.
    pub now_ms: fn() -> u64,
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

/// The simulated clock, when one is installed.
pub(crate) fn now_ms() -> Option<u64> {
    HOOKS.get().map(|hooks| (hooks.now_ms)())
}
