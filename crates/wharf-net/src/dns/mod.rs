//! The embedded DNS server of user networks: containers resolve each other's
//! names and aliases through a server on their network's gateway address
//! (port 53, UDP and TCP, in the host's network namespace); every other name
//! goes to the host's resolvers.
//!
//! Wharf has no daemon. The engine writes each container's names and
//! addresses to the record files ([`DnsRecords`], one JSON file per network)
//! and, when [`DnsRecords::add`] says no server runs, spawns one detached
//! server process per state root (`wharf __dns <dir>`), which runs
//! [`serve`] until no network has records left. The records module explains
//! the files, their locks, and why an add never races a server's exit; the
//! answer module what is answered, refused or forwarded.
//!
//! `hickory-proto` parses and encodes messages; the server loop is ours, on
//! a current-thread tokio runtime.

mod answer;
mod records;
mod resolv;
mod server;

pub use records::{DnsEntry, DnsNetwork, DnsRecords};
pub use resolv::host_resolvers;
pub use server::serve;
