//! `--memory*`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit`
//! and `--ulimit` turned into `linux.resources` and `process.rlimits`, with
//! Docker's checks and Podman's defaults.

use serde_json::{json, Map, Value};

use super::defaults::{DEFAULT_PIDS_LIMIT, DEFAULT_RLIMIT};
use super::{HostFacts, Resources, Ulimit};
use crate::EngineError;

/// The CFS period `--cpus` is expressed in (Docker's).
pub(crate) const CPU_PERIOD: u64 = 100_000;

/// Docker's minimum `--memory` (6 MiB).
const MIN_MEMORY: i64 = 6 << 20;

/// `--ulimit` names (setrlimit(2)'s resources, lowercase without `RLIMIT_`).
const ULIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Memory, CPU and pids limits as `linux.resources` fields (devices are added
/// by the caller).
pub(crate) fn linux_resources(res: &Resources) -> Result<Map<String, Value>, EngineError> {
    let mut out = Map::new();

    let mut memory = Map::new();
    if let Some(limit) = res.memory {
        if limit < MIN_MEMORY {
            return Err(EngineError::invalid(format!(
                "invalid --memory {limit}: the minimum is 6MB"
            )));
        }
        memory.insert("limit".into(), json!(limit));
    }
    match (res.memory, res.memory_swap) {
        (_, Some(-1)) => {
            memory.insert("swap".into(), json!(-1));
        }
        (None, Some(swap)) => {
            return Err(EngineError::invalid(format!(
                "invalid --memory-swap {swap}: set --memory too when limiting memory-swap"
            )));
        }
        (Some(limit), Some(swap)) if swap < limit => {
            return Err(EngineError::invalid(format!(
                "invalid --memory-swap {swap}: it must be at least --memory ({limit}) or -1"
            )));
        }
        (Some(_), Some(swap)) => {
            memory.insert("swap".into(), json!(swap));
        }
        // Docker: memory set, swap unset → swap = 2 × memory.
        (Some(limit), None) => {
            memory.insert("swap".into(), json!(limit.saturating_mul(2)));
        }
        (None, None) => {}
    }
    if let Some(reservation) = res.memory_reservation {
        if reservation < 0 || res.memory.is_some_and(|m| reservation > m) {
            return Err(EngineError::invalid(format!(
                "invalid --memory-reservation {reservation}: it must be between 0 and --memory"
            )));
        }
        memory.insert("reservation".into(), json!(reservation));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }

    let mut cpu = Map::new();
    if let Some(cpus) = res.cpus {
        if !cpus.is_finite() || cpus < 0.0 {
            return Err(EngineError::invalid(format!(
                "invalid --cpus {cpus}: it must be a positive number"
            )));
        }
        if cpus > 0.0 {
            // Docker: NanoCPUs × period / 1e9, i.e. cpus × period.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_precision_loss,
                reason = "cpus is finite and positive; the quota is rounded to whole µs"
            )]
            let quota = (cpus * CPU_PERIOD as f64).round() as i64;
            if quota < 1000 {
                return Err(EngineError::invalid(format!(
                    "invalid --cpus {cpus}: the minimum is 0.01"
                )));
            }
            cpu.insert("quota".into(), json!(quota));
            cpu.insert("period".into(), json!(CPU_PERIOD));
        }
    }
    if let Some(shares) = res.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(cpuset) = &res.cpuset_cpus {
        if cpuset.is_empty()
            || !cpuset
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        {
            return Err(EngineError::invalid(format!(
                "invalid --cpuset-cpus {cpuset:?}: expected a list such as 0-3,5"
            )));
        }
        cpu.insert("cpus".into(), json!(cpuset));
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }

    let pids = match res.pids_limit {
        None => DEFAULT_PIDS_LIMIT,
        Some(0 | -1) => -1,
        Some(n) if n > 0 => n,
        Some(n) => {
            return Err(EngineError::invalid(format!(
                "invalid --pids-limit {n}: use a positive number, or 0 or -1 for unlimited"
            )))
        }
    };
    out.insert("pids".into(), json!({"limit": pids}));
    Ok(out)
}

/// `process.rlimits`: Podman's RLIMIT_NOFILE and RLIMIT_NPROC defaults
/// clamped to the host's hard limits (without CAP_SYS_RESOURCE raising them
/// fails, which is how Podman 4.3 breaks out of the box), then `--ulimit`
/// entries, which replace a default of the same name and are not clamped:
/// the user asked for them.
pub(crate) fn rlimits(ulimits: &[Ulimit], host: &HostFacts) -> Result<Vec<Value>, EngineError> {
    let mut out: Vec<(String, u64, u64)> = vec![
        {
            let v = DEFAULT_RLIMIT.min(host.rlimit_nofile_hard);
            ("RLIMIT_NOFILE".into(), v, v)
        },
        {
            let v = DEFAULT_RLIMIT.min(host.rlimit_nproc_hard);
            ("RLIMIT_NPROC".into(), v, v)
        },
    ];
    for u in ulimits {
        let name = u.name.to_ascii_lowercase();
        if !ULIMIT_NAMES.contains(&name.as_str()) {
            return Err(EngineError::invalid(format!(
                "invalid --ulimit {:?}: unknown resource",
                u.name
            )));
        }
        if u.soft > u.hard {
            return Err(EngineError::invalid(format!(
                "invalid --ulimit {}={}:{}: the soft limit exceeds the hard limit",
                u.name, u.soft, u.hard
            )));
        }
        let typ = format!("RLIMIT_{}", name.to_ascii_uppercase());
        out.retain(|(t, _, _)| *t != typ);
        out.push((typ, u.soft, u.hard));
    }
    Ok(out
        .into_iter()
        .map(|(typ, soft, hard)| json!({"type": typ, "soft": soft, "hard": hard}))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(nofile: u64, nproc: u64) -> HostFacts {
        HostFacts {
            bounding_caps: None,
            rlimit_nofile_hard: nofile,
            rlimit_nproc_hard: nproc,
            cgroup_v2: true,
        }
    }

    #[test]
    fn rlimit_defaults_are_clamped_to_the_host_hard_limits() {
        let r = rlimits(&[], &host(20_000, 96_365)).unwrap();
        assert_eq!(
            Value::Array(r),
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 20000, "hard": 20000},
                {"type": "RLIMIT_NPROC", "soft": 96365, "hard": 96365}
            ])
        );
        let r = rlimits(&[], &host(u64::MAX, u64::MAX)).unwrap();
        assert_eq!(r[0]["hard"], 1_048_576);
        assert_eq!(r[1]["soft"], 1_048_576);
    }

    #[test]
    fn ulimit_replaces_a_default_and_is_validated() {
        let u = |name: &str, soft, hard| Ulimit {
            name: name.into(),
            soft,
            hard,
        };
        let r = rlimits(&[u("nofile", 10, 20), u("core", 0, 0)], &host(100, 100)).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0]["type"], "RLIMIT_NPROC");
        assert_eq!(
            r[1],
            json!({"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20})
        );
        assert_eq!(r[2]["type"], "RLIMIT_CORE");
        let err = rlimits(&[u("bogus", 1, 1)], &host(1, 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --ulimit \"bogus\": unknown resource"
        );
        assert!(rlimits(&[u("nofile", 2, 1)], &host(1, 1)).is_err());
    }

    #[test]
    fn cpus_become_quota_over_a_100ms_period() {
        let res = Resources {
            cpus: Some(1.5),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1".into()),
            ..Resources::default()
        };
        let out = linux_resources(&res).unwrap();
        assert_eq!(
            out["cpu"],
            json!({"quota": 150000, "period": 100000, "shares": 512, "cpus": "0-1"})
        );
        let res = Resources {
            cpus: Some(0.25),
            ..Resources::default()
        };
        assert_eq!(linux_resources(&res).unwrap()["cpu"]["quota"], 25000);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 0.001] {
            let res = Resources {
                cpus: Some(bad),
                ..Resources::default()
            };
            assert!(linux_resources(&res).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_swap_follows_docker() {
        let mem = |memory, memory_swap| Resources {
            memory,
            memory_swap,
            ..Resources::default()
        };
        let m = 64 << 20;
        assert_eq!(
            linux_resources(&mem(Some(m), None)).unwrap()["memory"],
            json!({"limit": m, "swap": 2 * m})
        );
        assert_eq!(
            linux_resources(&mem(Some(m), Some(-1))).unwrap()["memory"],
            json!({"limit": m, "swap": -1})
        );
        assert_eq!(
            linux_resources(&mem(Some(m), Some(m))).unwrap()["memory"]["swap"],
            m
        );
        assert!(linux_resources(&mem(Some(m), Some(m - 1))).is_err());
        assert!(linux_resources(&mem(None, Some(m))).is_err());
        assert!(linux_resources(&mem(Some(1024), None)).is_err());
        assert!(!linux_resources(&mem(None, None))
            .unwrap()
            .contains_key("memory"));
    }

    #[test]
    fn pids_default_to_2048_and_zero_or_minus_one_mean_unlimited() {
        let pids = |pids_limit| {
            linux_resources(&Resources {
                pids_limit,
                ..Resources::default()
            })
            .map(|r| r["pids"]["limit"].clone())
        };
        assert_eq!(pids(None).unwrap(), 2048);
        assert_eq!(pids(Some(0)).unwrap(), -1);
        assert_eq!(pids(Some(-1)).unwrap(), -1);
        assert_eq!(pids(Some(10)).unwrap(), 10);
        assert!(pids(Some(-2)).is_err());
    }
}
