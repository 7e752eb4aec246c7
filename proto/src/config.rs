//! The typed guest configuration as Validate returns it (wire types).
//!
//! Capability and flag sets are lists of canonical lower-case names; limits are numbers with
//! `null` meaning unlimited.

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
    /// The display name (`name` file), if any.
    pub display_name: Option<String>,
    /// Skipped by mark selection and autostart.
    pub disabled: bool,
    /// apps/init/style.
    pub init_style: String,
    /// Start runlevel.
    pub runlevel: Option<String>,
    /// apps/init/mark.
    pub mark: Vec<String>,
    /// apps/init/depends.
    pub depends: Vec<String>,
    /// The environment of init.
    pub environment: Vec<String>,
    /// The capability bounding set.
    pub bcapabilities: Vec<String>,
    /// Context capabilities.
    pub ccapabilities: Vec<String>,
    /// Context flags (cflags, or the old flags file).
    pub cflags: Vec<String>,
    /// Network flags.
    pub nflags: Vec<String>,
    /// Namespaces the guest may unshare (`umask`).
    pub umask: Vec<String>,
    /// uts/nodename.
    pub nodename: Option<String>,
    /// uts/domainname.
    pub domainname: Option<String>,
    /// nice of init.
    pub nice: Option<i64>,
    /// personality(2) value.
    pub personality: Option<i64>,
    /// Addresses from interfaces/.
    pub interfaces: Vec<AddressConfig>,
    /// Mounts from fstab (or the built-in default when there is none).
    pub mounts: Vec<MountConfig>,
    /// Per-guest limits (rlimits/).
    pub rlimits: Vec<LimitConfig>,
    /// Per-process limits of init (ulimits/).
    pub ulimits: Vec<LimitConfig>,
    /// cgroup/ settings as (file, value).
    pub cgroup: Vec<Setting>,
    /// Hook scripts that would run, as "HOOK: PATH".
    pub hooks: Vec<String>,
    /// Seconds the reboot helper waits for a stop.
    pub sync_timeout: i64,
}

/// One address of interfaces/.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct AddressConfig {
    /// The interfaces/ folder name.
    pub id: String,
    /// ADDRESS/PREFIX.
    pub address: String,
    /// The host device; absent with nodev.
    pub dev: Option<String>,
    /// The address label.
    pub label: Option<String>,
    pub nodev: bool,
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct MountConfig {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

/// A limit: min, soft and hard, `null` for unset or unlimited as `unlimited` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct LimitConfig {
    pub resource: String,
    pub min: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// Names of the fields set to unlimited ("soft", "hard", "min").
    pub unlimited: Vec<String>,
    /// The values are pages.
    pub in_pages: bool,
}

/// A file = value setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CustomType)]
pub struct Setting {
    pub name: String,
    pub value: String,
}
