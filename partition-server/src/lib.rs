//! The partition server.
