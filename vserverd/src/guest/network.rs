//! Which network a guest gets (docs/network.md): none of its own; a namespace the daemon makes
//! (interfaces/ addresses, spaces/net, netns/interfaces pairs); or another running guest's
//! (spaces/net naming its context).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::GuestState;

use crate::config::spaces::Space;
use crate::config::GuestConfig;
use crate::daemon::Daemon;
use crate::error::{Cause, StepError, StepResult};
use crate::guest::progress::Progress;
use crate::isolate::net;

#[derive(Debug, Clone)]
pub struct GuestNet {
    pub ns: PathBuf,
    /// Host ends we made (removing one end of a pair removes both).
    pub veths: Vec<String>,
    pub host_veth: Option<String>,
    /// Another guest's namespace: joined, never removed by us.
    pub shared: bool,
}

/// The network a run state records.
pub fn of_state(s: &super::runstate::RunState) -> Option<GuestNet> {
    s.netns.clone().map(|ns| GuestNet {
        ns,
        veths: if s.extra_veths.is_empty() {
            s.host_veth.clone().into_iter().collect()
        } else {
            s.extra_veths.clone()
        },
        host_veth: s.host_veth.clone(),
        shared: s.netns_shared,
    })
}

pub fn remove(n: &GuestNet) {
    if !n.shared {
        net::remove(&n.ns, &n.veths);
    }
}

/// A guest with no network of its own to set up gets a namespace with loopback only, made by
/// the stage (as the vs kernel gave a guest without addresses no IP networking at all), unless
/// its tree says `noncontext` or `nonetns`: the opt-ins to the host's whole stack.
pub fn loopback_only(c: &GuestConfig) -> bool {
    !c.noncontext && !c.nonetns
}

/// `shared`: the guest runs in the shared stack (guest/sharednet.rs), so nothing to make here.
pub async fn setup(
    d: &Arc<Daemon>,
    c: &GuestConfig,
    p: &Progress,
    shared: bool,
) -> Result<Option<GuestNet>, StepError> {
    const STEP: &str = "start.network";
    let name = c.name.as_str();
    if shared {
        return Ok(None);
    }
    if c.nonetns {
        p.send(
            name,
            "network",
            "the host's network stack (nonetns)",
            GuestState::Starting,
        );
        return Ok(None);
    }
    if let Some(Space::Share(ctx)) = c.spaces.net {
        let other = d
            .guests
            .running_names()
            .into_iter()
            .filter_map(|n| d.guests.running(&n))
            .find(|r| r.state.context == ctx)
            .ok_or_else(|| {
                StepError::refused(
                    STEP,
                    format!("spaces/net: no running guest has context {ctx}"),
                )
            })?;
        let ns = other.state.netns.clone().ok_or_else(|| {
            StepError::refused(
                STEP,
                format!(
                    "spaces/net: guest {} (context {ctx}) has no network namespace of its own",
                    other.state.name
                ),
            )
        })?;
        p.send(
            name,
            "network",
            &format!("sharing {}'s network", other.state.name),
            GuestState::Starting,
        );
        return Ok(Some(GuestNet {
            ns,
            veths: vec![],
            host_veth: None,
            shared: true,
        }));
    }
    let ifs = c.interfaces.list.clone();
    let pairs = c.netns.interfaces.clone();
    if ifs.is_empty() && pairs.is_empty() && c.spaces.net.is_none() {
        p.send(
            name,
            "network",
            if loopback_only(c) {
                "own namespace: loopback only (no interfaces/)"
            } else {
                "the host's network stack (noncontext)"
            },
            GuestState::Starting,
        );
        return Ok(None);
    }
    net::check_free(&ifs).step(STEP)?;
    let ns = net::netns_path(&d.opts.run_dir, name);
    let veth = net::host_veth(c.context);
    let mut veths: Vec<String> = pairs.iter().map(|p| p.host.clone()).collect();
    if !ifs.is_empty() {
        veths.insert(0, veth.clone());
    }
    let n = GuestNet {
        ns: ns.clone(),
        veths,
        host_veth: (!ifs.is_empty()).then(|| veth.clone()),
        shared: false,
    };
    let vlans = net::vlans(&ifs, c.interfaces.vlandev);
    // A user-namespace guest's namespace is owned by the user namespace it will run in, so its
    // root administers it (its interfaces, its own sysfs); made by a stage, as a mount is.
    let image = if owned_by_user(c) {
        Some(d.image().step(STEP)?)
    } else {
        None
    };
    let made = {
        let (ns, veth, pairs) = (ns.clone(), veth.clone(), pairs.clone());
        tokio::task::spawn_blocking(move || {
            net::create(&ns, &veth, &ifs, &pairs, &vlans, |pin| match &image {
                Some(image) => make_user_owned(image, pin),
                None => net::make_netns(pin),
            })
        })
        .await
        .step(STEP)?
    };
    let mut n = n;
    match made {
        // VLAN devices we made go with the guest, like its veths.
        Ok(v) => n.veths.extend(v),
        Err(e) => {
            remove(&n);
            return Err(Cause::from(e).at(STEP));
        }
    }
    let mut what: Vec<String> = c
        .interfaces
        .list
        .iter()
        .map(|i| format!("{}/{}", i.ip, i.prefix))
        .collect();
    what.extend(
        pairs
            .iter()
            .map(|p| format!("{} (host end {})", p.guest, p.host)),
    );
    p.send(
        name,
        "network",
        &format!(
            "own namespace: {}",
            if what.is_empty() {
                "loopback only".into()
            } else {
                what.join(", ")
            }
        ),
        GuestState::Starting,
    );
    Ok(Some(n))
}

/// Whether the namespace the daemon makes for `c` is owned by the guest's user namespace
/// (`spaces/user`): the start then joins that user namespace (StartPlan::netns_userns). A
/// namespace shared with another guest (spaces/net naming its context) is never made here.
pub fn owned_by_user(c: &GuestConfig) -> bool {
    c.spaces.user
}

/// Plan::Netns in a stage: the namespace and its owning user namespace, pinned at `pin`.
fn make_user_owned(
    image: &crate::stage::spawn::StageImage,
    pin: &Path,
) -> Result<(), net::NetError> {
    use crate::stage::plan::{NetnsPlan, Plan};
    use crate::stage::spawn;
    let plan = Plan::Netns(NetnsPlan { pin: pin.into() });
    let o = spawn::run(
        image,
        &plan,
        spawn::StageStdio::null(),
        "netns",
        spawn::GuestWait::EXEC,
        |_| {},
    )
    .map_err(|e| net::NetError(e.to_string()))?;
    match o.error {
        None => Ok(()),
        Some(e) => Err(net::NetError(e.to_string())),
    }
}
