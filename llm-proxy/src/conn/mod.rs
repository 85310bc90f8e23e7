//! The proxy's connections: the client-facing server, the upstream client with its pool of idle
//! connections, and the response body that reads the upstream while it is measured.

pub mod body;
pub mod client;
pub mod server;
