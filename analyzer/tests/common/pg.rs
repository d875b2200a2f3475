//! The throwaway PostgreSQL cluster, shared with the trace-back tests ([`apitap_tests::pg`]).

#[allow(unused_imports)] // not every test binary of `common` starts a cluster
pub use apitap_tests::pg::*;
