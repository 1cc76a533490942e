//! Entering another container's namespaces at each start: a pod member
//! enters its infra container's, `--network container:<id>` the target's
//! network namespace. The target's init may have changed since the last
//! start (it restarted), so the paths are set again every time.

use std::path::Path;

use super::{apply_join_plan, join_plan, Share};
use crate::containers::ContainerConfig;
use crate::{Engine, EngineError};

impl Engine {
    /// Sets the runtime spec's shared namespace paths to the target's init,
    /// which must be running; a pod member on the infra's network namespace
    /// also gets the infra's /etc/hosts and /etc/resolv.conf as they are
    /// now (its addresses, its DNS servers).
    pub(crate) fn refresh_joined_namespaces(
        &self,
        dir: &Path,
        config: &ContainerConfig,
    ) -> Result<(), EngineError> {
        let (target, namespaces, why) = if let Some(join) = &config.pod {
            (
                join.infra.as_str(),
                join.namespaces.clone(),
                "it is the infra container of this container's pod, whose namespaces it shares",
            )
        } else if let Some(target) = config.network.strip_prefix("container:") {
            (
                target,
                vec![Share::Net],
                "its network namespace is shared (--network container:)",
            )
        } else {
            return Ok(());
        };
        if namespaces.is_empty() {
            return Ok(());
        }
        let store = self.containers()?;
        let record = self.reconcile(store.get(target)?, false)?;
        let pid = match (record.state.is_up(), record.pid) {
            (true, Some(pid)) => pid,
            _ => {
                return Err(EngineError::NotRunning {
                    id: record.id.short().to_owned(),
                    reason: format!("{why}, and it is not running"),
                })
            }
        };
        let path = dir.join("config.json");
        let io = |operation| {
            let path = path.clone();
            move |source| EngineError::Io {
                operation,
                path,
                source,
            }
        };
        let bytes = fs_err::read(&path).map_err(io("read"))?;
        let mut spec: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(EngineError::AssembleSpec)?;
        apply_join_plan(&mut spec, &join_plan(&namespaces, pid));
        let bytes = serde_json::to_vec_pretty(&spec).map_err(EngineError::AssembleSpec)?;
        crate::containers::write_file(&path, &bytes)?;
        if config.pod.is_some() && namespaces.contains(&Share::Net) {
            let infra_dir = store.container_dir(&record.id);
            for file in ["hosts", "resolv.conf"] {
                let from = infra_dir.join(file);
                let text = fs_err::read(&from).map_err(|source| EngineError::Io {
                    operation: "read",
                    path: from.clone(),
                    source,
                })?;
                crate::containers::write_file(&dir.join(file), &text)?;
            }
        }
        Ok(())
    }
}
