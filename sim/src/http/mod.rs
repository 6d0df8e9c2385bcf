//! The contract on a real wire (feature `http`): the reference server behind a GraphQL-
//! over-HTTP endpoint (`syncsim serve`), and the contract checks any server can be put
//! through (`syncsim conformance`).
//!
//! Nothing here is part of a simulation run: the simulator's own kernel never opens a
//! socket, and the main job builds without this feature.

pub mod conformance;
pub mod graphql;
pub mod journal;
pub mod serve;
