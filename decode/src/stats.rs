//! Decoder counters. Every byte or message the decoder gives up on is counted here under its
//! cause (R-CAP-7); the agent exports them as `apitap_decode_<name>_total` metrics, with
//! each field's doc comment as the metric's help text ([`Stats::described`]).

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        $crate::stats::counters!(@struct Stats, "Monotonic decoder counters."; $($(#[doc = $doc])* $name,)*);
    };
    // Also used by other decoder parts with their own counter sets (`h2::H2Stats`).
    (@struct $S:ident, $sdoc:literal; $($(#[doc = $doc:literal])* $name:ident,)*) => {
        #[doc = $sdoc]
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct $S {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl $S {
            /// Adds every counter of `other` (totals over connections).
            pub fn add(&mut self, other: &Self) {
                $(self.$name += other.$name;)*
            }

            /// `(name, value)` for every counter, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// `(name, description, value)` for every counter, in declaration order; the
            /// description is the field's doc comment on one line (the metric's `# HELP`).
            pub fn described(&self) -> Vec<(&'static str, &'static str, u64)> {
                // Each doc line starts with a space: joined, they read as one line.
                vec![$((stringify!($name), concat!($($doc),*).trim_ascii_start(), self.$name),)*]
            }
        }
    };
}
pub(crate) use counters;

counters! {
    /// TCP segments handed to the reassembler.
    segments,
    /// Payload bytes handed to the reassembler.
    segment_bytes,
    /// Connections created.
    connections_opened,
    /// Connections closed (FIN, RST, timeout or eviction).
    connections_closed,
    /// Connections first seen mid-stream (no SYN).
    connections_midstream,
    /// New connections not tracked because the table was full of established ones (drop).
    connections_table_full,
    /// Connections not yet established (no payload in both directions, e.g. a bare SYN of a
    /// spoofed flood) evicted, oldest first, to make room for a new one in a full table (drop).
    connections_evicted_table_full,
    /// Connections closed by the idle timeout.
    connections_idle_timeout,
    /// Connections evicted to stay under the total buffer limit (drop).
    connections_evicted_memory,
    /// Segments wholly already delivered (retransmissions).
    segments_retransmitted,
    /// Segments that overlapped delivered or buffered bytes in part.
    segments_overlapping,
    /// Segments whose bytes disagreed with held out-of-order bytes they overlap (first copy
    /// kept; possible evasion attempt).
    segments_conflicting,
    /// Segments far outside the receive window, ignored (drop).
    segments_out_of_window,
    /// Segments without payload or flags of interest for an untracked connection.
    segments_untracked,
    /// Segments buffered out of order.
    segments_out_of_order,
    /// Gaps declared in a byte stream (drop).
    stream_gaps,
    /// Bytes missing in declared gaps (drop).
    stream_gap_bytes,
    /// Gaps forced because a connection's out-of-order buffer was full.
    gaps_buffer_full,
    /// Gaps declared because out-of-order data waited longer than the gap timeout.
    gaps_timeout,
    /// Gaps declared because the peer acknowledged bytes that were never captured.
    gaps_acked_unseen,
    /// Transactions emitted as events.
    transactions,
    /// Requests reported without a response.
    requests_without_response,
    /// Connections that spoke HTTP/2 (preface, or frames mid-connection; RFC 9113 §3.4).
    h2_connections,
    /// Responses with no outstanding request (not reported as events).
    unsolicited_responses,
    /// Requests reported early because too many were pipelined.
    pipeline_overflow,
    /// Responses to requests reported early by pipeline overflow, discarded when they came so
    /// that later responses still pair with their own requests.
    responses_after_overflow,
    /// Request-side framing errors.
    request_parse_errors,
    /// Response-side framing errors.
    response_parse_errors,
    /// Connections that switched protocols (WebSocket, CONNECT, `Upgrade: h2c`).
    upgrades,
    /// `Upgrade: h2c` requests whose answer did not come before the client sent more than the
    /// header limit (`max_header_bytes`) after them;
    /// the connection was then read as HTTP/1 (RFC 7540 §3.2).
    h2c_wait_overflow,
    /// Bodies whose content coding (gzip, deflate, br) was removed.
    bodies_decoded,
    /// Bodies whose content coding was corrupt (left as sent).
    body_decode_failures,
    /// Body decodes stopped at the cap with a bomb-like ratio.
    decompression_bombs,
    /// gRPC-Web calls over HTTP/1.x (PROTOCOL-WEB), one event each.
    grpc_web_calls,
    /// gRPC-Web calls over HTTP/1.x whose message framing was invalid (a bad prefix flag, or
    /// invalid base64 in text mode) or cut short: counting stopped there (drop).
    grpc_web_framing_errors,
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn every_counter_is_described_on_one_line() {
        let s = Stats::default();
        let described = s.described();
        assert_eq!(described.len(), s.fields().len());
        for (name, help, _) in described {
            assert!(
                help.ends_with('.') && !help.starts_with(' ') && !help.contains('\n'),
                "{name}: {help:?}"
            );
        }
        let evicted = s
            .described()
            .into_iter()
            .find(|(n, _, _)| *n == "connections_evicted_table_full")
            .map(|(_, h, _)| h);
        assert_eq!(
            evicted,
            Some(
                "Connections not yet established (no payload in both directions, e.g. a bare SYN \
                 of a spoofed flood) evicted, oldest first, to make room for a new one in a full \
                 table (drop)."
            )
        );
    }
}
