//! Pod records in `engine.db` (`pods`, migration 5) and the pod each
//! container is in (`containers.pod_id`).
//!
//! A pod and its infra container are recorded in one transaction, last, so
//! a failed `pod create` leaves neither. A member's insert checks its pod in
//! its own transaction, and a pod's removal checks that no container names
//! it in its own: of a racing `run --pod x` and `pod rm x`, either the
//! member is refused or the removal is.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::db::db;
use super::{
    conversion_error, insert_container, is_unique_violation, json_column, labels_json, nanos,
    read_row, time, ContainerId, ContainerRecord, ContainerStore, NewContainer, COLUMNS,
};
use crate::error::EngineError;
use crate::pods::{PodId, PodName};

/// What `pod create` records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPod {
    /// The id, from [`PodId::random`].
    pub id: PodId,
    /// The name.
    pub name: PodName,
    /// `--label`s.
    pub labels: BTreeMap<String, String>,
    /// The pod's configuration: opaque JSON to this module.
    pub config: serde_json::Value,
    /// Its infra container, recorded with it.
    pub infra_id: Option<ContainerId>,
}

/// A pod's record.
#[derive(Debug, Clone, PartialEq)]
pub struct PodRecord {
    /// The id.
    pub id: PodId,
    /// The name.
    pub name: PodName,
    /// When it was created.
    pub created: SystemTime,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its configuration, as given to `pod create`.
    pub config: serde_json::Value,
    /// Its infra container, if it has one.
    pub infra_id: Option<ContainerId>,
}

const POD_COLUMNS: &str = "id, name, created, labels, config, infra_id";

fn read_pod_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PodRecord> {
    let id: String = r.get(0)?;
    let name: String = r.get(1)?;
    Ok(PodRecord {
        id: PodId::parse(&id).map_err(|e| conversion_error(0, e.to_string()))?,
        name: PodName::parse(&name).map_err(|e| conversion_error(1, e.to_string()))?,
        created: time(r.get(2)?),
        labels: json_column(r, 3)?,
        config: json_column(r, 4)?,
        infra_id: r
            .get::<_, Option<String>>(5)?
            .map(|i| ContainerId::parse(&i))
            .transpose()
            .map_err(|e| conversion_error(5, e.to_string()))?,
    })
}

/// The pod whose `column` is `value`.
pub(super) fn read_pod(
    conn: &rusqlite::Connection,
    column: &str,
    value: &str,
) -> Result<Option<PodRecord>, EngineError> {
    conn.query_row(
        &format!("SELECT {POD_COLUMNS} FROM pods WHERE {column} = ?1"),
        [value],
        read_pod_row,
    )
    .optional()
    .map_err(db("read a pod"))
}

impl ContainerStore {
    /// Records a pod and its infra container (in state `created`) in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`EngineError::PodNameInUse`] when another pod has the name,
    /// [`EngineError::NameInUse`] when a container has the infra's name,
    /// [`EngineError::Database`] otherwise.
    pub fn create_pod(
        &self,
        pod: &NewPod,
        infra: Option<&NewContainer>,
    ) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin creating a pod"))?;
        let inserted = tx.execute(
            "INSERT INTO pods (id, name, created, labels, config, infra_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                pod.id.as_str(),
                pod.name.as_str(),
                nanos(SystemTime::now()),
                labels_json(&pod.labels),
                pod.config.to_string(),
                pod.infra_id.as_ref().map(ContainerId::as_str),
            ],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                let holder = read_pod(&tx, "name", pod.name.as_str())?;
                return Err(EngineError::PodNameInUse {
                    name: pod.name.to_string(),
                    holder: holder.map(|p| p.id.short().to_owned()).unwrap_or_default(),
                });
            }
            Err(e) => return Err(db("insert a pod")(e)),
        }
        if let Some(infra) = infra {
            insert_container(&tx, infra)?;
        }
        tx.commit().map_err(db("commit a new pod"))
    }

    /// Resolves what a user typed, as for containers: a full id, else a
    /// name, else a unique id prefix.
    ///
    /// # Errors
    ///
    /// [`EngineError::PodNotFound`]; [`EngineError::PodAmbiguous`] when the
    /// prefix matches several pods; [`EngineError::Database`].
    pub fn get_pod(&self, reference: &str) -> Result<PodRecord, EngineError> {
        let conn = self.conn();
        if let Ok(id) = PodId::parse(reference) {
            if let Some(p) = read_pod(&conn, "id", id.as_str())? {
                return Ok(p);
            }
        }
        if let Ok(name) = PodName::parse(reference) {
            if let Some(p) = read_pod(&conn, "name", name.as_str())? {
                return Ok(p);
            }
        }
        let not_found = || EngineError::PodNotFound {
            reference: reference.to_owned(),
        };
        if !super::names::is_id_prefix(reference) {
            return Err(not_found());
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {POD_COLUMNS} FROM pods WHERE substr(id, 1, ?2) = ?1 LIMIT 2"
            ))
            .map_err(db("look up a pod by id prefix"))?;
        let mut found: Vec<PodRecord> = stmt
            .query_map(params![reference, reference.len() as i64], read_pod_row)
            .map_err(db("look up a pod by id prefix"))?
            .collect::<Result<_, _>>()
            .map_err(db("read a pod"))?;
        match found.len() {
            0 => Err(not_found()),
            1 => Ok(found.remove(0)),
            _ => Err(EngineError::PodAmbiguous {
                prefix: reference.to_owned(),
            }),
        }
    }

    /// Every pod, newest first.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn list_pods(&self) -> Result<Vec<PodRecord>, EngineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {POD_COLUMNS} FROM pods ORDER BY created DESC, rowid DESC"
            ))
            .map_err(db("list pods"))?;
        let pods = stmt
            .query_map([], read_pod_row)
            .map_err(db("list pods"))?
            .collect::<Result<_, _>>()
            .map_err(db("read a pod"))?;
        Ok(pods)
    }

    /// The containers in a pod (its infra included), oldest first.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn pod_members(&self, pod: &PodId) -> Result<Vec<ContainerRecord>, EngineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers WHERE pod_id = ?1 ORDER BY created, rowid"
            ))
            .map_err(db("list the containers of a pod"))?;
        let members = stmt
            .query_map([pod.as_str()], read_row)
            .map_err(db("list the containers of a pod"))?
            .collect::<Result<_, _>>()
            .map_err(db("read a container"))?;
        Ok(members)
    }

    /// Deletes a pod's record, which no container may name any more.
    ///
    /// # Errors
    ///
    /// [`EngineError::PodNotFound`]; [`EngineError::PodHasContainers`]
    /// when a container is still in it; [`EngineError::Database`].
    pub fn remove_pod(&self, pod: &PodId) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin removing a pod"))?;
        let Some(record) = read_pod(&tx, "id", pod.as_str())? else {
            return Err(EngineError::PodNotFound {
                reference: pod.to_string(),
            });
        };
        let members: i64 = tx
            .query_row(
                "SELECT count(*) FROM containers WHERE pod_id = ?1",
                [pod.as_str()],
                |r| r.get(0),
            )
            .map_err(db("count the containers of a pod"))?;
        if members > 0 {
            return Err(EngineError::PodHasContainers {
                name: record.name.to_string(),
                count: members as usize,
            });
        }
        tx.execute("DELETE FROM pods WHERE id = ?1", [pod.as_str()])
            .map_err(db("remove a pod"))?;
        tx.commit().map_err(db("commit removing a pod"))
    }
}
