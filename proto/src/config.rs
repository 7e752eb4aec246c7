//! The typed guest configuration as Validate returns it (wire types).

use serde::{Deserialize, Serialize};
use zlink::introspect::CustomType;

/// A guest's parsed configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct GuestConfig {
    /// The guest's name (basename of its config folder).
    pub name: String,
    /// The static context id.
    pub context: u32,
    /// The guest's root directory.
    pub vdir: String,
}
