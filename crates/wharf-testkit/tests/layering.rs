//! Enforces the workspace layout of STYLE.md §1: the crate graph (only the arrows of
//! the diagram), `allow(unsafe_code)` only in `wharf-sys` and `wharf-testkit`, and
//! every `lib.rs` opening with `//!` crate docs.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// Each crate's allowed Wharf dependencies ([dependencies], [build-dependencies],
    /// target-specific ones too). [dev-dependencies] may add `wharf-testkit` only.
    const ALLOWED: &[(&str, &[&str])] = &[
        (
            "wharf",
            &[
                "wharf-api",
                "wharf-compose",
                "wharf-build",
                "wharf-engine",
                "wharf-runtime",
                "wharf-sys",
                "wharf-cgroups",
                "wharf-image",
                "wharf-registry",
                "wharf-net",
            ],
        ),
        (
            "wharf-api",
            &["wharf-engine", "wharf-build", "wharf-image", "wharf-sys"],
        ),
        (
            "wharf-compose",
            &["wharf-engine", "wharf-build", "wharf-image"],
        ),
        (
            "wharf-build",
            &["wharf-engine", "wharf-image", "wharf-sys", "wharf-runtime"],
        ),
        (
            "wharf-engine",
            &[
                "wharf-net",
                "wharf-registry",
                "wharf-image",
                "wharf-runtime",
                "wharf-cgroups",
                "wharf-sys",
            ],
        ),
        ("wharf-runtime", &["wharf-cgroups", "wharf-sys"]),
        ("wharf-cgroups", &["wharf-sys"]),
        ("wharf-registry", &["wharf-image", "wharf-sys"]),
        ("wharf-image", &["wharf-sys"]),
        ("wharf-net", &["wharf-sys"]),
        ("wharf-sys", &[]),
        ("wharf-testkit", &[]),
    ];

    /// The only Wharf crate a dev-dependency may add.
    const DEV_ONLY: &str = "wharf-testkit";

    /// Crates whose modules may `allow(unsafe_code)`.
    const UNSAFE_CRATES: &[&str] = &["wharf-sys", "wharf-testkit"];

    const DEPENDENCY_TABLES: &[&str] = &["dependencies", "build-dependencies", "dev-dependencies"];

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap()
    }

    fn read_toml(path: &Path) -> toml::Table {
        let text = fs_err::read_to_string(path).unwrap();
        text.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    /// `crates/<dir>/Cargo.toml` of every crate, sorted.
    fn crate_dirs(root: &Path) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = fs_err::read_dir(root.join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        dirs
    }

    fn package_name(manifest: &toml::Table, path: &Path) -> String {
        manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{} has no package.name", path.display()))
            .to_owned()
    }

    /// The package a dependency entry names: its `package` key, else the package at its
    /// `path`, else its key. `workspace = true` entries are looked up in the root's
    /// [workspace.dependencies].
    fn dependency_package(
        key: &str,
        spec: &toml::Value,
        base: &Path,
        root: &Path,
        workspace: &toml::Table,
    ) -> String {
        let inherited = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
        let (spec, base) = if inherited {
            let shared = workspace
                .get("workspace")
                .and_then(|w| w.get("dependencies"))
                .and_then(|d| d.get(key))
                .unwrap_or_else(|| {
                    panic!("{key} = {{ workspace = true }} but the root does not define it")
                });
            (shared.clone(), root.to_owned())
        } else {
            (spec.clone(), base.to_owned())
        };
        if let Some(package) = spec.get("package").and_then(toml::Value::as_str) {
            return package.to_owned();
        }
        if let Some(path) = spec.get("path").and_then(toml::Value::as_str) {
            let manifest_path = base.join(path).join("Cargo.toml");
            if manifest_path.is_file() {
                return package_name(&read_toml(&manifest_path), &manifest_path);
            }
        }
        key.to_owned()
    }

    fn is_wharf(name: &str) -> bool {
        name == "wharf" || name.starts_with("wharf-")
    }

    /// (table name, table) for [dependencies]-like tables, target-specific ones included.
    fn dependency_tables(manifest: &toml::Table) -> Vec<(String, &toml::Table)> {
        let mut tables = Vec::new();
        for name in DEPENDENCY_TABLES {
            if let Some(t) = manifest.get(*name).and_then(toml::Value::as_table) {
                tables.push(((*name).to_owned(), t));
            }
        }
        if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
            for (cfg, target) in targets {
                for name in DEPENDENCY_TABLES {
                    if let Some(t) = target.get(*name).and_then(toml::Value::as_table) {
                        tables.push((format!("target.{cfg}.{name}"), t));
                    }
                }
            }
        }
        tables
    }

    /// Edges of the workspace at `root` outside [`ALLOWED`], and how many Wharf edges
    /// there are in all.
    fn graph_violations(root: &Path) -> (Vec<String>, usize) {
        let workspace = read_toml(&root.join("Cargo.toml"));
        let mut offending = Vec::new();
        let mut edges = 0;
        for dir in crate_dirs(root) {
            let manifest_path = dir.join("Cargo.toml");
            let manifest = read_toml(&manifest_path);
            let from = package_name(&manifest, &manifest_path);
            let allowed: BTreeSet<&str> = ALLOWED
                .iter()
                .find(|(name, _)| *name == from)
                .map(|(_, deps)| deps.iter().copied().collect())
                .unwrap_or_default();
            for (table_name, table) in dependency_tables(&manifest) {
                let dev = table_name.ends_with("dev-dependencies");
                for (key, spec) in table {
                    let to = dependency_package(key, spec, &dir, root, &workspace);
                    if !is_wharf(&to) || to == from {
                        continue;
                    }
                    edges += 1;
                    let ok = allowed.contains(to.as_str()) || (dev && to == DEV_ONLY);
                    if !ok {
                        let known = if ALLOWED.iter().any(|(name, _)| *name == from) {
                            ""
                        } else {
                            " (crate missing from the allowed graph in layering.rs)"
                        };
                        offending.push(format!(
                            "{from} -> {to}: [{table_name}] of {}{known}",
                            manifest_path.strip_prefix(root).unwrap().display()
                        ));
                    }
                }
            }
        }
        (offending, edges)
    }

    #[test]
    fn crate_graph_has_only_allowed_edges() {
        let root = workspace_root();
        let (offending, edges) = graph_violations(&root);
        assert!(
            offending.is_empty(),
            "edges outside the crate graph of STYLE.md §1:\n  {}",
            offending.join("\n  ")
        );
        assert!(
            edges > 0,
            "found no Wharf edges at all: is the workspace at {}?",
            root.display()
        );
    }

    /// Whether `source` has an `allow(…)`/`expect(…)` listing `unsafe_code`.
    fn allows_unsafe_code(source: &str) -> bool {
        let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
        ["allow(", "expect("].iter().any(|marker| {
            compact.match_indices(marker).any(|(at, _)| {
                let args = &compact[at + marker.len()..];
                // Lint names come before `reason = "…"` and contain none of these.
                let end = args.find([')', '"', '=']).unwrap_or(args.len());
                args[..end]
                    .split(',')
                    .any(|lint| lint == "unsafe_code" || lint == "rust::unsafe_code")
            })
        })
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    rust_files(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    /// `.rs` files under `root/crates` outside [`UNSAFE_CRATES`] that allow
    /// `unsafe_code`, as `path:line`.
    fn unsafe_violations(root: &Path) -> Vec<String> {
        let mut files = Vec::new();
        rust_files(&root.join("crates"), &mut files);
        assert!(!files.is_empty(), "no .rs files under {}", root.display());
        files
            .iter()
            .filter(|path| {
                !UNSAFE_CRATES
                    .iter()
                    .any(|c| path.starts_with(root.join("crates").join(c)))
            })
            .filter_map(|path| {
                let source = fs_err::read_to_string(path).unwrap();
                if !allows_unsafe_code(&source) {
                    return None;
                }
                let line = source
                    .lines()
                    .position(|l| l.contains("unsafe_code"))
                    .map_or(String::new(), |n| format!(":{}", n + 1));
                Some(format!(
                    "{}{line}",
                    path.strip_prefix(root).unwrap().display()
                ))
            })
            .collect()
    }

    #[test]
    fn unsafe_code_is_allowed_only_in_sys_and_testkit() {
        let offending = unsafe_violations(&workspace_root());
        assert!(
            offending.is_empty(),
            "allow(unsafe_code) outside {UNSAFE_CRATES:?} (move the unsafe into wharf-sys):\n  {}",
            offending.join("\n  ")
        );
    }

    /// `crates/*/src/lib.rs` files of `root` that do not open with `//!`.
    fn lib_doc_violations(root: &Path) -> Vec<String> {
        crate_dirs(root)
            .into_iter()
            .map(|dir| dir.join("src/lib.rs"))
            .filter(|lib| lib.is_file())
            .filter(|lib| !fs_err::read_to_string(lib).unwrap().starts_with("//!"))
            .map(|lib| lib.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn every_lib_rs_opens_with_crate_docs() {
        let offending = lib_doc_violations(&workspace_root());
        assert!(
            offending.is_empty(),
            "lib.rs must open with `//!` docs saying what the crate does and must not know:\n  {}",
            offending.join("\n  ")
        );
    }

    #[test]
    fn unsafe_code_detector_reads_attributes() {
        assert!(allows_unsafe_code("#![allow(unsafe_code)]"));
        assert!(allows_unsafe_code(
            "#[allow(\n    clippy::x,\n    unsafe_code,\n    reason = \"ok\"\n)]"
        ));
        assert!(allows_unsafe_code("#[cfg_attr(test, expect(unsafe_code))]"));
        assert!(!allows_unsafe_code("#![deny(unsafe_code)]"));
        assert!(!allows_unsafe_code(
            "#[allow(dead_code, reason = \"not unsafe_code\")]"
        ));
        assert!(!allows_unsafe_code("#[allow(unsafe_code_extra)]"));
    }

    /// Writes `crates/<name>/Cargo.toml` (with `deps` appended) and `src/lib.rs`.
    fn fake_crate(root: &Path, name: &str, deps: &str, lib: &str) {
        let dir = root.join("crates").join(name);
        fs_err::create_dir_all(dir.join("src")).unwrap();
        fs_err::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\n{deps}"),
        )
        .unwrap();
        fs_err::write(dir.join("src/lib.rs"), lib).unwrap();
    }

    #[test]
    fn checks_catch_a_bad_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs_err::write(
            root.join("Cargo.toml"),
            "[workspace.dependencies]\n\
             sys = { path = \"crates/wharf-sys\", package = \"wharf-sys\" }\n\
             wharf-engine = { path = \"crates/wharf-engine\" }\n\
             wharf-testkit = { path = \"crates/wharf-testkit\" }\n",
        )
        .unwrap();
        fake_crate(
            root,
            "wharf-sys",
            "",
            "//! ok\n#![allow(unsafe_code, reason = \"ok\")]\n",
        );
        fake_crate(
            root,
            "wharf-testkit",
            "[dev-dependencies]\nsys.workspace = true\n",
            "//! ok\n",
        );
        fake_crate(root, "wharf-engine", "", "//! ok\n");
        fake_crate(
            root,
            "wharf-runtime",
            "[dependencies]\nsys.workspace = true\n\
             eng = { path = \"../wharf-engine\", package = \"wharf-engine\" }\n\
             [dev-dependencies]\nwharf-testkit.workspace = true\n\
             [target.'cfg(unix)'.dependencies]\nwharf-engine.workspace = true\n",
            "// no crate docs\n#[allow(clippy::x, unsafe_code)]\nfn f() {}\n",
        );

        let (graph, edges) = graph_violations(root);
        assert_eq!(edges, 5, "{graph:?}");
        assert_eq!(
            graph,
            [
                "wharf-runtime -> wharf-engine: [dependencies] of crates/wharf-runtime/Cargo.toml",
                "wharf-runtime -> wharf-engine: [target.cfg(unix).dependencies] of crates/wharf-runtime/Cargo.toml",
                "wharf-testkit -> wharf-sys: [dev-dependencies] of crates/wharf-testkit/Cargo.toml",
            ]
        );
        assert_eq!(
            unsafe_violations(root),
            ["crates/wharf-runtime/src/lib.rs:2"]
        );
        assert_eq!(
            lib_doc_violations(root),
            ["crates/wharf-runtime/src/lib.rs"]
        );
    }
}
