//! The API's calls as `Client` methods, one file per resource, as the
//! server's routes are.

mod blockers;
mod claims;
mod events;
mod inbox;
mod swarms;
mod tasks;
mod witness;
