//! The API inventory (R-INV-1…5): which endpoints the servers actually serve, what they
//! carry, who calls them, and how that changes.
//!
//! * [`shape`]: value shapes of path segments and parameters (never the values).
//! * [`tree`]: path templating by per-position statistics (R-INV-1).
//! * [`spec`]: operator OpenAPI documents (shadow/zombie) and analyst overrides.
//! * [`learn`]: per-endpoint shape learning (R-INV-2) and exposure (R-INV-4).
//! * [`sensitive`]: data labels, function class and sensitivity per endpoint (R-SEN-1, 2).
//! * [`engine`]: events in, endpoints and changes out; lifecycle (R-INV-3).
//! * [`record`], [`store`]: the stored inventory (SQLite or PostgreSQL) and change log.
//! * [`openapi`], [`ocsf`], [`api`]: export (R-INV-5), change events, HTTP JSON API.
//!
//! See `docs/inventory.md` for the user-facing description. The analyzer is a thin service
//! shell around it (`apitap_analyzer::inventory` re-exports this crate).
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod engine;
pub mod learn;
pub mod memory;
pub mod ocsf;
pub mod openapi;
pub mod probe;
pub mod record;
pub mod report;
pub mod sensitive;
pub mod shape;
pub mod spec;
pub mod store;
pub mod text;
pub mod tree;

pub use config::InventoryConfig;
pub use engine::Inventory;
pub use store::{Store, StoreError};
