//! L1: what Grok-1 is, as data: hyper-parameters ([`Config`]) and the key each format gives
//! each of them ([`keys::CONFIG_KEYS`]), the ordered table of the 770 release files
//! ([`params`]), and each parameter role's shape, class and names ([`roles::ROLES`]).

pub mod config;
pub mod keys;
pub mod params;
pub mod roles;

pub use config::{Config, Dim};
pub use keys::{read_config, KeyFormat, KeyValue, CONFIG_KEYS};
pub use params::{ParamSpec, ParamTable};
pub use roles::{Layout, Role, RoleInfo, ROLES};
