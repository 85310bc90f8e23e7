//! HTTP/1.1 as the proxy speaks it, with no I/O: what is read and written is bytes in buffers, so
//! that each rule can be tested on its own.

pub mod decode;
pub mod fields;
