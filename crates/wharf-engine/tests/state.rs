//! Component tests of the engine's container records (`<root>/engine.db`)
//! and per-container locks, including races between threads and between
//! separate processes (the test binary re-executed in a child mode).

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, SystemTime};

    use wharf_engine::state::{
        ContainerId, ContainerName, ContainerState, ContainerStore, ListFilter, NewContainer,
        Transition,
    };
    use wharf_engine::{EngineError, ErrorKind};

    /// Selects a child mode when the test binary is re-executed.
    const CHILD_MODE: &str = "WHARF_ENGINE_STATE_TEST_CHILD";
    const CHILD_ROOT: &str = "WHARF_ENGINE_STATE_TEST_ROOT";

    fn new_container(name: &str) -> NewContainer {
        NewContainer {
            id: ContainerId::random().unwrap(),
            name: ContainerName::parse(name).unwrap(),
            image_id: "sha256:".to_owned() + &"ab".repeat(32),
            image_name: "busybox:latest".to_owned(),
            config: serde_json::json!({"Cmd": ["sh"], "Tty": true}),
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            pod_id: None,
        }
    }

    fn id_with_prefix(prefix: &str) -> ContainerId {
        let hex = format!(
            "{prefix}{}",
            &ContainerId::random().unwrap().as_str()[prefix.len()..]
        );
        ContainerId::parse(&hex).unwrap()
    }

    /// The database passes SQLite's integrity check and every record parses
    /// back (ids, names, states, JSON) with unique names.
    fn check_consistent(root: &Path) {
        let conn = rusqlite::Connection::open(root.join("engine.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let store = ContainerStore::open(root).unwrap();
        let all = store.list(ListFilter::All).unwrap();
        let mut names: Vec<_> = all.iter().map(|r| r.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "names are unique");
    }

    #[test]
    fn create_get_list_rename_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let web = new_container("web");
        store.create(&web).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let db = new_container("/db");
        store.create(&db).unwrap();

        let got = store.get_by_id(&web.id).unwrap();
        assert_eq!(got.name.as_str(), "web");
        assert_eq!(got.state, ContainerState::Created);
        assert_eq!(got.config, web.config);
        assert_eq!(got.labels, web.labels);
        assert_eq!(got.image_name, "busybox:latest");
        assert_eq!((got.pid, got.exit_code, got.restart_count), (None, None, 0));
        assert!(got.created <= SystemTime::now());
        assert_eq!(store.get_by_name(&db.name).unwrap().id, db.id);
        assert_eq!(store.get("/db").unwrap().id, db.id);
        assert_eq!(store.get(web.id.as_str()).unwrap().name.as_str(), "web");

        let all = store.list(ListFilter::All).unwrap();
        let names: Vec<_> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["db", "web"], "newest first");
        assert!(store.list(ListFilter::Up).unwrap().is_empty());

        store
            .rename(&web.id, &ContainerName::parse("web2").unwrap())
            .unwrap();
        assert_eq!(store.get("web2").unwrap().id, web.id);
        assert_eq!(store.get("web").unwrap_err().kind(), ErrorKind::NotFound);
        let err = store.rename(&web.id, &db.name).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "name \"db\" is already in use by container {}",
                db.id.short()
            )
        );

        store.remove(&web.id).unwrap();
        let err = store.get_by_id(&web.id).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), format!("no such container: {}", web.id));
        assert_eq!(
            store.remove(&web.id).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // The name is free again.
        let mut again = new_container("web2");
        again.id = ContainerId::random().unwrap();
        store.create(&again).unwrap();
    }

    #[test]
    fn a_taken_name_is_already_exists_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let first = new_container("xx");
        store.create(&first).unwrap();
        let err = store.create(&new_container("xx")).unwrap_err();
        assert!(matches!(err, EngineError::NameInUse { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            err.to_string(),
            format!(
                "name \"xx\" is already in use by container {}",
                first.id.short()
            )
        );
        assert_eq!(store.list(ListFilter::All).unwrap().len(), 1);
    }

    #[test]
    fn random_names_are_adjective_surname_and_retry_on_collision() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        for _ in 0..40 {
            let name = store
                // The name in the request is replaced by a generated one.
                .create_with_random_name(&new_container("unused-name"))
                .unwrap();
            assert!(name.as_str().contains('_'), "{name}");
        }
        assert_eq!(store.list(ListFilter::All).unwrap().len(), 40);
    }

    #[test]
    fn id_prefixes_resolve_when_unique_and_conflict_when_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let mut a = new_container("a1");
        a.id = id_with_prefix("abc1");
        let mut b = new_container("b1");
        b.id = id_with_prefix("abc2");
        store.create(&a).unwrap();
        store.create(&b).unwrap();
        assert_eq!(store.get("abc1").unwrap().id, a.id);
        assert_eq!(store.get(&a.id.as_str()[..20]).unwrap().id, a.id);
        let err = store.get("abc").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            "container id prefix \"abc\" matches more than one container"
        );
        assert_eq!(store.get("a").unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(store.get("abd").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(store.get("ABC1").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(store.get("").unwrap_err().kind(), ErrorKind::NotFound);
        // A name wins over an id prefix, as in Docker.
        let mut named = new_container("abc");
        named.id = id_with_prefix("ff");
        store.create(&named).unwrap();
        assert_eq!(store.get("abc").unwrap().id, named.id);
    }

    #[test]
    fn transitions_record_pids_times_exit_codes_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let c = new_container("tt");
        store.create(&c).unwrap();

        let err = store
            .transition(&c.id, Transition::Exit { exit_code: Some(0) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            format!(
                "container {} is created: cannot make it exited",
                c.id.short()
            )
        );

        let r = store
            .transition(
                &c.id,
                Transition::Start {
                    pid: 4242,
                    monitor_pid: Some(4241),
                },
            )
            .unwrap();
        assert_eq!(r.state, ContainerState::Running);
        assert_eq!((r.pid, r.monitor_pid), (Some(4242), Some(4241)));
        let started = r.started_at.unwrap();
        assert_eq!(store.list(ListFilter::Up).unwrap().len(), 1);

        assert_eq!(
            store.transition(&c.id, Transition::Pause).unwrap().state,
            ContainerState::Paused
        );
        assert_eq!(store.list(ListFilter::Up).unwrap().len(), 1);
        assert_eq!(
            store.transition(&c.id, Transition::Unpause).unwrap().state,
            ContainerState::Running
        );

        let r = store
            .transition(&c.id, Transition::Exit { exit_code: Some(1) })
            .unwrap();
        assert_eq!(r.state, ContainerState::Exited);
        assert_eq!((r.pid, r.monitor_pid, r.exit_code), (None, None, Some(1)));
        assert!(r.finished_at.unwrap() >= started);
        assert!(store.list(ListFilter::Up).unwrap().is_empty());

        let r = store.transition(&c.id, Transition::Restart).unwrap();
        assert_eq!((r.state, r.restart_count), (ContainerState::Restarting, 1));
        let r = store
            .transition(
                &c.id,
                Transition::Start {
                    pid: 5000,
                    monitor_pid: Some(4241),
                },
            )
            .unwrap();
        assert_eq!((r.exit_code, r.restart_count), (None, 1));

        // The monitor died: the exit code is unknown.
        let r = store
            .transition(&c.id, Transition::Exit { exit_code: None })
            .unwrap();
        assert_eq!((r.state, r.exit_code), (ContainerState::Exited, None));

        store.transition(&c.id, Transition::Remove).unwrap();
        assert_eq!(
            store
                .transition(&c.id, Transition::Remove)
                .unwrap_err()
                .kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            store.transition(&c.id, Transition::Die).unwrap().state,
            ContainerState::Dead
        );
        let missing = ContainerId::random().unwrap();
        assert_eq!(
            store
                .transition(&missing, Transition::Pause)
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // Everything persisted.
        drop(store);
        let store = ContainerStore::open(dir.path()).unwrap();
        let r = store.get_by_id(&c.id).unwrap();
        assert_eq!((r.state, r.restart_count), (ContainerState::Dead, 1));
    }

    #[test]
    fn events_come_back_in_order_and_filter_by_time_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let c = new_container("ev");
        let before = SystemTime::now();
        let mut seqs = Vec::new();
        for action in ["create", "start"] {
            seqs.push(
                store
                    .append_event(&c.id, &c.name, action, &BTreeMap::new())
                    .unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
        let middle = SystemTime::now();
        let attrs = BTreeMap::from([("exitCode".to_owned(), "3".to_owned())]);
        seqs.push(store.append_event(&c.id, &c.name, "die", &attrs).unwrap());
        seqs.push(
            store
                .append_event(&c.id, &c.name, "destroy", &BTreeMap::new())
                .unwrap(),
        );
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

        let all = store.events(None, 0).unwrap();
        let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "start", "die", "destroy"]);
        assert!(all.iter().all(|e| e.container == c.id && e.name == "ev"));
        assert!(all[0].time >= before);
        assert_eq!(all[2].attributes, attrs);

        let since: Vec<_> = store
            .events(Some(middle), 0)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(since, ["die", "destroy"]);
        let after: Vec<_> = store
            .events(None, seqs[2])
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(after, ["destroy"]);
    }

    #[test]
    fn fifty_threads_racing_for_one_name_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(ContainerStore::open(dir.path()).unwrap());
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let shared = Arc::clone(&shared);
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    // Half share one connection, half open their own.
                    let own;
                    let store = if i % 2 == 0 {
                        &*shared
                    } else {
                        own = ContainerStore::open(&root).unwrap();
                        &own
                    };
                    barrier.wait();
                    store.create(&new_container("xx"))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "{results:?}");
        let winner = shared.get("xx").unwrap();
        for r in &results {
            if let Err(e) = r {
                assert_eq!(
                    e.to_string(),
                    format!(
                        "name \"xx\" is already in use by container {}",
                        winner.id.short()
                    )
                );
            }
        }
        assert_eq!(shared.list(ListFilter::All).unwrap().len(), 1);
        check_consistent(dir.path());
    }

    #[test]
    fn fifty_threads_with_different_names_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let store = ContainerStore::open(&root).unwrap();
                    barrier.wait();
                    store.create(&new_container(&format!("c{i}")))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
        let store = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(store.list(ListFilter::All).unwrap().len(), 50);
        check_consistent(dir.path());
    }

    /// The child modes, run when the binary is re-executed by a test below:
    /// `create:<name>` writes `won` or the error's kind and text to
    /// `<root>/outcome-<pid>`; `hold-lock:<id>` takes the container's lock,
    /// writes `<root>/locked-<pid>`, and holds it until `<root>/release`
    /// appears.
    #[test]
    fn state_child() {
        let (Ok(mode), Some(root)) = (std::env::var(CHILD_MODE), std::env::var_os(CHILD_ROOT))
        else {
            return;
        };
        let root = Path::new(&root);
        // Start together: wait for the parent's `go` (up to 30 s), then
        // open (maybe creating and migrating the database) and act.
        for _ in 0..3000 {
            if root.join("go").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let store = ContainerStore::open(root).unwrap();
        let pid = std::process::id();
        if let Some(name) = mode.strip_prefix("create:") {
            let outcome = match store.create(&new_container(name)) {
                Ok(()) => "won".to_owned(),
                Err(e) => format!("{:?}: {e}", e.kind()),
            };
            fs_err::write(root.join(format!("outcome-{pid}")), outcome).unwrap();
        } else if let Some(id) = mode.strip_prefix("hold-lock:") {
            let id = ContainerId::parse(id).unwrap();
            let lock = store.lock(&id).unwrap();
            fs_err::write(root.join(format!("locked-{pid}")), "").unwrap();
            while !root.join("release").exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(lock);
        } else {
            panic!("unknown child mode {mode:?}");
        }
    }

    /// Lets the children spawned so far (waiting for it) go.
    fn go(root: &Path) {
        fs_err::write(root.join("go"), "").unwrap();
    }

    fn spawn_child(root: &Path, mode: &str) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::state_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_MODE, mode)
            .env(CHILD_ROOT, root)
            .spawn()
            .unwrap()
    }

    fn outcomes(root: &Path) -> Vec<String> {
        let mut out: Vec<String> = fs_err::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("outcome-"))
            .map(|e| fs_err::read_to_string(e.path()).unwrap())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn eight_processes_racing_for_one_name_have_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        // No store yet: the children also race to create and migrate it.
        let children: Vec<_> = (0..8)
            .map(|_| spawn_child(dir.path(), "create:xx"))
            .collect();
        go(dir.path());
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let store = ContainerStore::open(dir.path()).unwrap();
        let winner = store.get("xx").unwrap();
        let lost = format!(
            "AlreadyExists: name \"xx\" is already in use by container {}",
            winner.id.short()
        );
        let mut expected = vec![lost; 7];
        expected.push("won".to_owned());
        assert_eq!(outcomes(dir.path()), expected);
        assert_eq!(store.list(ListFilter::All).unwrap().len(), 1);
        check_consistent(dir.path());
    }

    #[test]
    fn eight_processes_with_different_names_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..8)
            .map(|i| spawn_child(dir.path(), &format!("create:p{i}")))
            .collect();
        go(dir.path());
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert_eq!(outcomes(dir.path()), vec!["won"; 8]);
        let store = ContainerStore::open(dir.path()).unwrap();
        assert_eq!(store.list(ListFilter::All).unwrap().len(), 8);
    }

    /// `try_lock`, retried briefly: a child that another test forks keeps a
    /// copy of every open descriptor (and so of a held `flock`) from `fork`
    /// until its `exec` closes it (CLOEXEC).
    fn try_lock_soon(
        store: &ContainerStore,
        id: &ContainerId,
    ) -> Option<wharf_engine::state::ContainerLock> {
        for _ in 0..500 {
            if let Some(lock) = store.try_lock(id).unwrap() {
                return Some(lock);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn a_container_lock_held_by_another_process_excludes_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let id = ContainerId::random().unwrap();
        let other = ContainerId::random().unwrap();
        let mut child = spawn_child(dir.path(), &format!("hold-lock:{id}"));
        go(dir.path());
        let locked = dir.path().join(format!("locked-{}", child.id()));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !locked.exists() {
            assert!(std::time::Instant::now() < deadline, "child never locked");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(store.try_lock(&id).unwrap().is_none());
        // A different container proceeds in parallel.
        let guard = store.try_lock(&other).unwrap().unwrap();
        assert!(guard.path().ends_with(format!("containers/{other}/lock")));
        fs_err::write(dir.path().join("release"), "").unwrap();
        // The blocking lock waits for the child to let go.
        let lock = store.lock(&id).unwrap();
        assert!(child.wait().unwrap().success());
        drop(lock);
        assert!(try_lock_soon(&store, &id).is_some());

        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(store.container_dir(&id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_container_lock_excludes_another_holder_in_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(dir.path()).unwrap();
        let id = ContainerId::random().unwrap();
        let held = store.lock(&id).unwrap();
        assert!(store.try_lock(&id).unwrap().is_none());
        drop(held);
        assert!(try_lock_soon(&store, &id).is_some());
    }
}
