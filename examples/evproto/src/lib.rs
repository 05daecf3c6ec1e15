//! The library half of the `evproto` tools: the charging-station simulator
//! engine ([`sim`]), shared by `evproto simulate` and the reference CSMS's
//! demo.
//!
//! ```
//! use evproto::sim::model::{Behaviour, Msg, StationModel};
//! // a station with two connectors; a remote start begins a transaction at once
//! let mut station = StationModel::new("CP1", 2, Behaviour::default(), 7);
//! let (_answer, out) = station.remote_start(Some(1), "RFID-1", None);
//! assert!(out.iter().any(|m| matches!(m, Msg::TxStart { connector: 1, .. })));
//! ```

pub mod sim;
