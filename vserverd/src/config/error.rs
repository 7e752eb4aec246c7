//! Errors and warnings that point at a file and, where it makes sense, a line, each with a
//! stable code (`check --json`) that scripts match on.

use std::fmt;
use std::path::{Path, PathBuf};

/// Declares [`Code`]: each variant with its stable kebab-case name and what it means. A code
/// never changes meaning once released; new problems get new codes. docs/config.md lists them
/// all (a unit test keeps the two in step).
macro_rules! codes {
    ($($v:ident = $s:literal : $meaning:literal,)*) => {
        /// What kind of problem a [`ConfigError`] is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $($v,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$v,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$v => $s,)* }
            }

            pub fn meaning(self) -> &'static str {
                match self { $(Code::$v => $meaning,)* }
            }
        }
    };
}

codes! {
    // Errors: the tree is refused.
    GuestMissing = "guest-missing": "the guest's config folder does not exist",
    ConfigGone = "config-gone": "the guest runs but its config folder was removed",
    TreeUnsafe = "tree-unsafe": "a file of the tree (or .defaults) is not root's or is writable by others",
    FileUnreadable = "file-unreadable": "a config file exists but cannot be read",
    FileIsDirectory = "file-is-directory": "a folder where a file is expected",
    IntegerInvalid = "integer-invalid": "a file that holds a number holds something else",
    ContextMissing = "context-missing": "no context file (dynamic context ids are not supported)",
    ContextInvalid = "context-invalid": "context, ncontext or tag is not a number",
    ContextRange = "context-range": "a context id outside 2-65535",
    ContextClash = "context-clash": "another guest uses the same context id",
    NameUnknown = "name-unknown": "a capability, flag or namespace name not in util-vserver's tables (bcapabilities, ccapabilities, cflags, nflags, ncapabilities, umask)",
    PersonalityUnknown = "personality-unknown": "a personality type or flag vpersonality does not know",
    NiceRange = "nice-range": "nice outside -20..19",
    IoniceRange = "ionice-range": "ionice class outside 0-3 or priority outside 0-7",
    UtsTooLong = "uts-too-long": "uts/nodename longer than 64 bytes",
    FstabSyntax = "fstab-syntax": "an fstab line without SOURCE TARGET TYPE",
    FstabTargetRelative = "fstab-target-relative": "an fstab mount point that is not absolute",
    FstabTargetEscapes = "fstab-target-escapes": "an fstab mount point that leaves the guest root (..)",
    InitStyleUnknown = "init-style-unknown": "apps/init/style is not sysv, plain, minit, gentoo, openrc, arch or rescue",
    InitEnvironmentSyntax = "init-environment-syntax": "an apps/init/environment line that is not VAR=VALUE",
    KillseqInvalid = "killseq-invalid": "apps/init/killseq has a bad signal or wait, or is empty",
    DependsInvalid = "depends-invalid": "apps/init/depends names something that cannot be a guest",
    VshelperTimeout = "vshelper-timeout": "apps/vshelper/sync-timeout outside 0-86400",
    InterfaceIpMissing = "interface-ip-missing": "an interfaces/ folder without an ip file",
    InterfaceIpInvalid = "interface-ip-invalid": "an interface ip that is not an IPv4 or IPv6 address",
    InterfacePrefixInvalid = "interface-prefix-invalid": "an interface prefix length out of range",
    InterfaceMaskInvalid = "interface-mask-invalid": "an interface mask that is not a (contiguous) netmask",
    InterfaceDevMissing = "interface-dev-missing": "an interface with neither dev nor nodev (util-vserver stops on it)",
    LimitInvalid = "limit-invalid": "an rlimits/ or ulimits/ value that is not a number, inf or -1",
    CgroupNameInvalid = "cgroup-name-invalid": "a cgroup/ file whose name is not controller.knob",
    UintInvalid = "uint-invalid": "a sched/ or dlimits/ value that is not a non-negative integer (dlimits/ also take -1 and inf)",
    ScheduleShort = "schedule-short": "the legacy schedule file has fewer than six numbers",
    SysctlIncomplete = "sysctl-incomplete": "a sysctl/ entry without its setting or value file",
    SysctlSettingInvalid = "sysctl-setting-invalid": "a sysctl setting that is not a dotted name",
    SpaceInvalid = "space-invalid": "a spaces/ file that is neither empty nor a context id (spaces/user: not empty)",
    UserShared = "user-shared": "spaces/user with spaces/pid naming another guest's pid namespace",
    NetnsInvalid = "netns-invalid": "a netns/ interface without a valid host name, or of a type other than veth",
    NetmodeInvalid = "netmode-invalid": "apps/vserverd/netmode is neither shared nor netns",
    NetmodeHostCaps = "netmode-host-caps": "a shared-stack guest whose bcapabilities grant NET_ADMIN or NET_RAW (the host's own stack)",
    DlimitInvalid = "dlimit-invalid": "a dlimits/ entry whose directory is not an absolute path or whose reserved is over 100 (percent)",
    ExcludeSyntax = "exclude-syntax": "an apps/vunify/exclude line that can never match (not starting with / or *, a prefix alone, a [ without ]), or a list that is not text; unify refuses the call",

    // Warnings: the tree is accepted.
    FileUnknown = "file-unknown": "a file or folder vserverd does not know; ignored",
    LegacyFile = "legacy-file": "a legacy or deprecated file (fstab.local, capabilities, legacy, hostname, domainname, only_ip); read or ignored as said",
    NonamespaceIgnored = "nonamespace-ignored": "nonamespace: every guest gets its own mount namespace",
    RootExposed = "root-exposed": "host users can reach the guest root (a folder above it is not 0700/0000)",
    PtraceGranted = "ptrace-granted": "bcapabilities grants SYS_PTRACE",
    NotApplicable = "not-applicable": "a setting that needs the vserver kernel (ccapabilities, device maps, uts fields other than nodename and domainname, interface options); parsed, not applied",
    DlimitIncomplete = "dlimit-incomplete": "a dlimits/ entry without all four files; skipped, as util-vserver does",
    DlimitsNoCache = "dlimits-no-cache": "dlimits/ without a cache link",
    LimitUnknown = "limit-unknown": "an rlimits/ or ulimits/ file naming no resource; ignored",
    AnyAddress = "any-address": "an interface address 0.0.0.0 or :: (util-vserver: every address of the host); reaches nothing in a namespace",
    LabelTooLong = "label-too-long": "interfaces/N/name makes a label eth0:NAME longer than 15 bytes; the address is added without a label",
    ScopeUnused = "scope-unused": "interfaces/N/scope: read, never used (as in util-vserver)",
    SpaceIgnored = "space-ignored": "a spaces/ file other than pid, net, user and nouser; ignored",
    UserNouser = "user-nouser": "spaces/user and spaces/nouser both exist; nouser wins",
    IdUnmappable = "id-unmappable": "check --deep: files of the guest root owned by ids of 65536 or more, which a user namespace (spaces/user) cannot map: nobody's inside, not writable",
    Unbounded = "unbounded": "the guest has no pids or no memory limit",
    SuidBind = "suid-bind": "an fstab bind mount that says suid",
    CpusExclusive = "cpus-exclusive": "cpuset/cpus_exclusive: written by util-vserver's build, read by nothing",
    RssOverridesMemory = "rss-overrides-memory": "rlimits/rss and cgroup/memory.limit_in_bytes both set; rlimits/rss wins",
    LoopbackOnly = "loopback-only": "no interfaces/: the guest has loopback only",
    HostOnly = "host-only": "every address is nodev: the guest reaches the host only",
    NodevNotLocal = "nodev-not-local": "a shared-stack nodev address the host does not have: binds to it fail",
    HostWildcard = "host-wildcard": "host services listen on 0.0.0.0 or :: while a guest would use the shared stack: no guest can bind the ports they hold; bind host daemons to host addresses",
    NetworkFallback = "network-fallback": "the shared stack cannot be had on this host (or, not asked for by name, is not given while abstract unix binds are unfenced): the guest gets a network namespace",
    AbstractUnconfined = "abstract-unconfined": "netmode shared: the guest can bind abstract unix socket names the host's programs would connect to (no BPF LSM fence yet)",
    KernelNoLoadavg = "kernel-no-loadavg": "a virt_load guest on a kernel without per-cgroup load averages (kernel-patch/, CONFIG_CGROUP_LOADAVG): its /proc/loadavg is approximated",
    KernelNoCowlink = "kernel-no-cowlink": "a guest root on ext4 with apps/vunify/ on a kernel without copy-on-write links (kernel-patch/, CONFIG_COWLINK): unify cannot share its files",
    QuotaOverrun = "quota-overrun": "a guest with a disk limit on ext4 keeps CAP_SYS_RESOURCE (bcapabilities) without a user namespace: ext4 lets it write past the limit",
}

/// A configuration error or warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub code: Code,
    pub file: PathBuf,
    /// 1-based; None when the problem is the file as a whole (missing, unreadable).
    pub line: Option<u32>,
    pub message: String,
    /// The other wrong lines of the same file, where its parser goes on past the first
    /// (a list of names): `check` reports them all.
    pub also: Vec<ConfigError>,
}

/// A warning has the same shape: something parsed but ignored or not applicable.
pub type Diagnostic = ConfigError;

impl ConfigError {
    pub fn at(code: Code, file: &Path, line: u32, message: impl Into<String>) -> Self {
        Self {
            code,
            file: file.to_path_buf(),
            line: Some(line),
            message: message.into(),
            also: Vec::new(),
        }
    }

    pub fn file(code: Code, file: &Path, message: impl Into<String>) -> Self {
        Self {
            code,
            file: file.to_path_buf(),
            line: None,
            message: message.into(),
            also: Vec::new(),
        }
    }

    /// The first of `errors` carrying the rest, or None when there is none.
    pub fn first_of(mut errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        let mut first = errors.remove(0);
        first.also = errors;
        Some(first)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// Collects the errors of a tree: a part that fails is recorded and its default used, so one
/// pass reports every file that is wrong (a migrating admin fixes them all at once).
#[derive(Debug, Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn keep<T: Default>(&mut self, r: Result<T>) -> T {
        self.keep_or(r, T::default())
    }

    pub fn keep_or<T>(&mut self, r: Result<T>, fallback: T) -> T {
        match r {
            Ok(v) => v,
            Err(mut e) => {
                let also = std::mem::take(&mut e.also);
                self.0.push(e);
                self.0.extend(also);
                fallback
            }
        }
    }
}
