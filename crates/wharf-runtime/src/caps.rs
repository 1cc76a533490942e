//! Capability sets: exactly what the config says, nothing inherited
//! (CVE-2022-29162 class: inheritable and ambient stay empty unless asked).

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Step, StepError};

/// The five capability sets to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CapPlan {
    pub(crate) bounding: CapsHashSet,
    pub(crate) effective: CapsHashSet,
    pub(crate) permitted: CapsHashSet,
    pub(crate) inheritable: CapsHashSet,
    pub(crate) ambient: CapsHashSet,
}

fn convert(set: &Option<Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    for cap in set.iter().flatten() {
        match format!("CAP_{cap}").parse::<Capability>() {
            Ok(c) => {
                out.insert(c);
            }
            Err(_) => tracing::warn!(capability = %cap, "unknown capability ignored"),
        }
    }
    out
}

impl CapPlan {
    /// The plan for `caps` (absent: every set empty).
    pub(crate) fn from_spec(caps: Option<&LinuxCapabilities>) -> Self {
        match caps {
            None => CapPlan::default(),
            Some(c) => CapPlan {
                bounding: convert(c.bounding()),
                effective: convert(c.effective()),
                permitted: convert(c.permitted()),
                inheritable: convert(c.inheritable()),
                ambient: convert(c.ambient()),
            },
        }
    }

    /// Adds capabilities (`exec --cap`) to every set but ambient.
    pub(crate) fn add(&mut self, extra: &CapsHashSet) {
        for set in [
            &mut self.bounding,
            &mut self.effective,
            &mut self.permitted,
            &mut self.inheritable,
        ] {
            set.extend(extra.iter().copied());
        }
    }

    /// Drops from the bounding set what the config does not list. Needs
    /// CAP_SETPCAP, so it runs before the user switch.
    pub(crate) fn apply_bounding(&self) -> Result<(), StepError> {
        // One read of cap_last_cap rather than a prctl probe per capability.
        let supported = caps::runtime::procfs_all_supported(None)
            .unwrap_or_else(|_| caps::runtime::thread_all_supported());
        for cap in supported {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(std::io::Error::other)
                    .step(|| format!("drop {cap} from the bounding set"))?;
            }
        }
        Ok(())
    }

    /// Sets effective, permitted, inheritable, then ambient (after the user
    /// switch, which kept the permitted set with `PR_SET_KEEPCAPS`).
    pub(crate) fn apply_sets(&self) -> Result<(), StepError> {
        let io = std::io::Error::other;
        caps::set(None, CapSet::Effective, &self.effective)
            .map_err(io)
            .step(|| "set effective capabilities".into())?;
        caps::set(None, CapSet::Permitted, &self.permitted)
            .map_err(io)
            .step(|| "set permitted capabilities".into())?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(io)
            .step(|| "set inheritable capabilities".into())?;
        if caps::runtime::ambient_set_supported().is_ok() {
            caps::clear(None, CapSet::Ambient)
                .map_err(io)
                .step(|| "clear ambient capabilities".into())?;
            // The kernel only raises an ambient capability that is both
            // permitted and inheritable; configs written for runc list
            // ambient caps with an empty inheritable set, and runc skips
            // them, so do we.
            for cap in &self.ambient {
                if self.permitted.contains(cap) && self.inheritable.contains(cap) {
                    caps::raise(None, CapSet::Ambient, *cap)
                        .map_err(io)
                        .step(|| format!("raise ambient capability {cap}"))?;
                } else {
                    tracing::debug!(capability = %cap, "ambient capability skipped: not permitted and inheritable");
                }
            }
        }
        Ok(())
    }
}

/// Parses capability names as given on a command line (`CAP_NET_ADMIN` or
/// `NET_ADMIN`, any case).
pub fn parse_names(names: &[String]) -> Result<CapsHashSet, String> {
    let mut out = CapsHashSet::new();
    for name in names {
        let canonical = caps::to_canonical(name);
        let cap = canonical
            .parse::<Capability>()
            .map_err(|_| format!("unknown capability {name:?}"))?;
        out.insert(cap);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_sets_are_empty_and_names_convert() {
        let caps: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL"]
        }))
        .unwrap();
        let plan = CapPlan::from_spec(Some(&caps));
        assert_eq!(plan.bounding.len(), 2);
        assert!(plan.effective.contains(&Capability::CAP_KILL));
        assert!(plan.inheritable.is_empty());
        assert!(plan.ambient.is_empty());
        assert!(CapPlan::from_spec(None).permitted.is_empty());
    }

    #[test]
    fn parses_command_line_names() {
        let set = parse_names(&["net_admin".into(), "CAP_SYS_ADMIN".into()]).unwrap();
        assert!(set.contains(&Capability::CAP_NET_ADMIN));
        assert!(set.contains(&Capability::CAP_SYS_ADMIN));
        assert!(parse_names(&["CAP_BOGUS".into()]).is_err());
    }
}
