//! apitap's decoder: from TCP segments to API events, independent of where the bytes came from.
//!
//! This crate owns everything between "a packet was seen" and "an [`ApiEvent`] exists":
//!
//! - [`tcp`]: per-connection TCP reassembly (ordering, retransmissions, gaps, FIN/RST, idle
//!   timeouts, bounded memory) producing ordered byte streams;
//! - [`session`]: the source-independent stage — ordered bytes of one direction of one
//!   connection, with timestamps and gaps marked — which pairs requests and responses;
//! - [`http1`]: HTTP/1.x message framing per RFC 9112, distinguishing "need more bytes" from
//!   "invalid";
//! - [`h2`]: HTTP/2 framing, HPACK (with mid-connection join) and stream pairing per RFC 9113
//!   and RFC 7541; [`grpc`] and [`protobuf`] on top of it (issue 17).
//!
//! It does no I/O and has no notion of eBPF, pcap or Kafka: the sensor's live capture and pcap
//! replay both feed [`tcp::Reassembler`]; TLS uprobes will feed [`session::Session`] directly.
//! Every decision to give up on bytes is counted in [`Stats`] (R-CAP-7).
//!
//! [`ApiEvent`]: apitap_schema::ApiEvent

pub mod content;
pub mod grpc;
pub mod h2;
pub mod http1;
pub mod packet;
pub mod protobuf;
pub mod session;
pub mod stats;
pub mod tcp;

pub use session::{ConnMeta, Session, SessionConfig, Side};
pub use stats::Stats;
pub use tcp::{Reassembler, ReassemblyConfig, Segment};
