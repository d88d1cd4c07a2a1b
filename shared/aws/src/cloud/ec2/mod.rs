//! EC2, one module per kind of resource.

pub(crate) mod gateways;
pub(crate) mod image;
pub(crate) mod instance;
pub(crate) mod route_table;
pub(crate) mod security_group;
pub(crate) mod subnet;
pub(crate) mod volume;
pub(crate) mod vpc;
