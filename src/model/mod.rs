//! L1: what Grok-1 is, as data: hyper-parameters ([`Config`]), the ordered table of the 770
//! release files ([`params`]), and every name each output format gives each parameter
//! ([`roles::ROLES`], one row per role).

pub mod config;
pub mod params;
pub mod roles;

pub use config::Config;
pub use params::{ParamSpec, ParamTable};
pub use roles::{Role, RoleInfo};
