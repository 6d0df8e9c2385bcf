//! How the reference server takes a request's variables: typed ones as they are (moved
//! when the request was handed over, copied when it is only lent), JSON ones parsed as a
//! wire's. A typed variable never reaches state by a path its JSON would not: a typed
//! variant of the other kind is read as its JSON and refused as that JSON would be.
//! This module parses; it never changes the server's state.

use super::Rejection;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use sync_engine::wire::{SyncPullVariables, SyncPushVariables, SyncVariables};

/// A request's variables as [`ReferenceServer::route`] gets them: borrowed from a request
/// its caller keeps, or taken out of one handed over, whose typed variables then move in.
pub(super) enum GivenVariables<'a> {
    Borrowed(&'a SyncVariables),
    Owned(SyncVariables),
}

impl<'a> GivenVariables<'a> {
    /// Typed push variables as they are; anything else parsed from its JSON, as a server
    /// parses a wire's (typed pull variables sent to a push are read as their JSON too,
    /// and refused as that JSON would be).
    pub(super) fn push(self) -> Result<SyncPushVariables, Rejection> {
        let json = match self {
            GivenVariables::Owned(SyncVariables::Push(variables)) => return Ok(variables),
            GivenVariables::Borrowed(SyncVariables::Push(variables)) => {
                return Ok(variables.clone())
            }
            given => given.into_json(),
        };
        SyncPushVariables::deserialize(&*json).map_err(|error| {
            Rejection::validation(super::push::describe_variables_error(&json, &error))
        })
    }

    /// [`GivenVariables::push`] for a pull.
    pub(super) fn pull(self) -> Result<SyncPullVariables, Rejection> {
        let json = match self {
            GivenVariables::Owned(SyncVariables::Pull(variables)) => return Ok(variables),
            GivenVariables::Borrowed(SyncVariables::Pull(variables)) => {
                return Ok(variables.clone())
            }
            given => given.into_json(),
        };
        SyncPullVariables::deserialize(&*json)
            .map_err(|error| Rejection::validation(format!("invalid pull variables: {error}")))
    }

    fn into_json(self) -> Cow<'a, Value> {
        match self {
            GivenVariables::Borrowed(variables) => variables.to_json(),
            GivenVariables::Owned(variables) => Cow::Owned(variables.into_json()),
        }
    }
}
