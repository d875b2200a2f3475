//! HTTP/2 decoding (RFC 9113) for the monitor: framing, HPACK and stream pairing.
//!
//! - [`frame`]: incremental per-direction frame parser (preface, frame header, DATA streamed
//!   out without buffering, other frames whole), "need more" distinct from "invalid";
//! - [`huffman`], [`hpack`]: header decompression that keeps going after a mid-connection
//!   join (unknown table entries are marked, never invented);
//! - [`conn`]: one connection's two directions, streams paired into [`conn::H2Message`]s with
//!   bodies, trailers, end reasons and anomalies, bounded everywhere (R-CAP-3, R-CAP-7);
//! - [`upgrade`]: an HTTP/1.1 `Upgrade: h2c` exchange (RFC 7540 §3.2) turned into the
//!   upgraded connection's stream 1 and the client's settings.
//!
//! gRPC on top of it lives in [`crate::grpc`], protobuf bodies in [`crate::protobuf`].

pub mod conn;
pub mod dump;
pub(crate) mod event;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod upgrade;

pub use conn::{Connection, End, H2Anomaly, H2Config, H2Message, H2Stats, Part};

#[cfg(test)]
pub(crate) mod tests;
