//! What the proxy measures: which requests are inference requests, what their responses tell as
//! they pass (stream format, the JSON scanner, why a generation ended), and the metrics kept
//! between scrapes.

pub mod collector;
pub mod finish;
pub mod histogram;
pub mod json;
pub mod metrics;
pub mod naming;
pub mod observe;
pub mod route;
