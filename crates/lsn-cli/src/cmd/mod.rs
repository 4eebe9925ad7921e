//! One module per `lsn` subcommand.

pub mod convert;
pub mod fetch;
pub mod ppl;
pub mod random_model;
