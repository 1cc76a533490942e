//! `container prune` (and the container part of `system prune`): removes
//! every stopped container a [`PruneFilter`] selects.

use crate::state::ContainerId;
use crate::system::PruneFilter;
use crate::{Engine, EngineError};

/// What [`Engine::prune_containers`] did.
#[derive(Debug, Default)]
pub struct ContainerPruneReport {
    /// The containers removed, in listing order (newest first).
    pub removed: Vec<ContainerId>,
    /// Bytes their writable layers held.
    pub reclaimed: u64,
    /// Containers that could not be removed, with why; the others were.
    pub failed: Vec<(ContainerId, EngineError)>,
}

impl Engine {
    /// Removes the containers that are not up (created, exited, dead) and
    /// pass `filter`. A container that fails to go is reported in
    /// [`ContainerPruneReport::failed`] and the rest still go.
    ///
    /// # Errors
    ///
    /// The containers cannot be listed.
    pub fn prune_containers(
        &self,
        filter: &PruneFilter,
    ) -> Result<ContainerPruneReport, EngineError> {
        let mut report = ContainerPruneReport::default();
        for c in self.list_containers(true)? {
            let record = &c.record;
            // An infra container goes with its pod (`pod rm`).
            if record.state.is_up()
                || c.config.infra
                || !filter.matches(record.created, &record.labels)
            {
                continue;
            }
            let size = self.container_size(&c).map(|(rw, _)| rw).unwrap_or(0);
            match self.remove_container(record.id.as_str(), false, false) {
                Ok(_) => {
                    report.reclaimed += size;
                    report.removed.push(record.id.clone());
                }
                // Started since it was listed: not stopped any more.
                Err(EngineError::ContainerRunning { .. }) => {}
                Err(e) => report.failed.push((record.id.clone(), e)),
            }
        }
        Ok(report)
    }
}
