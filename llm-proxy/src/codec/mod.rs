//! HTTP/1.1 as the proxy speaks it, with no I/O: what is read and written is bytes in buffers, so
//! that each rule can be tested on its own. One codec for both roles, as hyper's
//! `Http1Transaction` has it: heads (`head`), where a body ends and whether a connection
//! persists (`framing`, the one place for those rules), body decoding (`decode`), head and chunk
//! writing (`write`), and the header fields as they came (`fields`).

pub mod decode;
pub mod fields;
pub mod framing;
pub mod head;
pub mod write;
