//! Small programs that show `sync-engine` in use.
//!
//! [`todo`] is a two-device todo app in the terminal: a `phone` and a `laptop` of one
//! tenant, each an engine on its own SQLite file, syncing with the in-process reference
//! server of `sync-sim`, which stands in for the app's backend. Run it with
//!
//! ```text
//! cargo run -p sync-examples --example todo
//! ```
//!
//! and type `help`. A walkthrough that ends in a conflict dialog (the same steps as
//! `examples/walkthrough.todo`, which `--script` replays):
//!
//! ```text
//! add phone Buy milk          # a todo on the phone, queued for the server
//! sync                        # the phone pushes it, the laptop pulls it
//! offline laptop              # the laptop loses its network
//! edit phone 1 Buy oat milk   # both devices edit todo 1 between two syncs,
//! edit laptop 1 Buy soy milk  #   so at the same instant
//! sync                        # the phone's edit reaches the server; the laptop's
//!                             #   sync fails with a typed transport failure
//! online laptop
//! sync laptop                 # the server refuses the laptop's concurrent edit:
//!                             #   the engine stores a conflict
//! conflicts laptop            # the Conflict Resolution dialog
//! resolve laptop 1 local      # keep the laptop's title, as a new write
//! sync                        # it reaches the server, then the phone
//! list                        # both devices list "Buy soy milk"
//! ```
//!
//! Where to look in the code: [`todo::TodoApp`] opens the engines
//! (`EngineOptions`, `Engine::open` with a manual clock and seeded entropy) and turns
//! each command into engine calls (`create`, `update` with a JSON Merge Patch, `delete`,
//! `list`, `status`, `list_conflicts`, `resolve_conflict`); its `sync` runs the engine's
//! sans-IO loop (`sync_now`, then `poll_event` / `poll_request` / `handle_response` until
//! nothing is left to send) and prints each `SyncEvent` as it comes.

pub mod todo;
