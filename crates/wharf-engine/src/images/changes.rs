//! `--change` / `-c`: Dockerfile instructions applied to an image config
//! (`import`, later `commit`): CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER,
//! WORKDIR, VOLUME, STOPSIGNAL — the set Docker accepts there.

use std::collections::HashMap;

use oci_spec::image::{
    Arch, Config, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use wharf_image::Platform;

use crate::EngineError;

/// The config of an image made by `import`: the host's platform, now as its
/// creation time, one history step, and `changes` applied.
pub(crate) fn import_config(
    changes: &[String],
    message: Option<&str>,
) -> Result<ImageConfiguration, EngineError> {
    let mut config = Config::default();
    apply_changes(&mut config, changes)?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let host = Platform::host();
    let internal = |e: oci_spec::OciSpecError| EngineError::invalid(format!("image config: {e}"));
    let mut history = HistoryBuilder::default()
        .created(now.clone())
        .created_by("wharf import")
        .build()
        .map_err(internal)?;
    if let Some(message) = message {
        history.set_comment(Some(message.to_owned()));
    }
    let mut builder = ImageConfigurationBuilder::default()
        .created(now)
        .architecture(Arch::from(host.architecture.as_str()))
        .os(Os::from(host.os.as_str()))
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(Vec::<String>::new())
                .build()
                .map_err(internal)?,
        )
        .history(vec![history]);
    if let Some(variant) = host.variant {
        builder = builder.variant(variant);
    }
    builder.build().map_err(internal)
}

/// Applies Dockerfile instructions to `config`.
///
/// # Errors
///
/// An unknown or malformed instruction; the error names it.
pub fn apply_changes(config: &mut Config, changes: &[String]) -> Result<(), EngineError> {
    for change in changes {
        apply_one(config, change).map_err(|reason| {
            EngineError::invalid(format!("invalid change {change:?}: {reason}"))
        })?;
    }
    Ok(())
}

fn apply_one(config: &mut Config, change: &str) -> Result<(), String> {
    let change = change.trim();
    let (instruction, rest) = change
        .split_once(char::is_whitespace)
        .map(|(i, r)| (i, r.trim()))
        .unwrap_or((change, ""));
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.set_cmd(Some(command(rest)?));
        }
        "ENTRYPOINT" => {
            config.set_entrypoint(Some(command(rest)?));
        }
        "ENV" => {
            let mut env = config.env().clone().unwrap_or_default();
            for (key, value) in key_values(rest, "ENV")? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                env.push(format!("{key}={value}"));
            }
            config.set_env(Some(env));
        }
        "LABEL" => {
            let mut labels: HashMap<String, String> = config.labels().clone().unwrap_or_default();
            for (key, value) in key_values(rest, "LABEL")? {
                labels.insert(key, value);
            }
            config.set_labels(Some(labels));
        }
        "EXPOSE" => {
            let mut ports = config.exposed_ports().clone().unwrap_or_default();
            for port in rest.split_whitespace() {
                let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
                let valid = number.parse::<u16>().is_ok_and(|n| n > 0)
                    || number
                        .split_once('-')
                        .is_some_and(|(a, b)| a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok());
                if !valid || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(format!("{port:?} is not PORT[/tcp|udp|sctp]"));
                }
                let entry = format!("{number}/{proto}");
                if !ports.contains(&entry) {
                    ports.push(entry);
                }
            }
            if ports.is_empty() {
                return Err("EXPOSE needs a port".into());
            }
            config.set_exposed_ports(Some(ports));
        }
        "USER" => {
            config.set_user(Some(non_empty(rest, "USER")?.to_owned()));
        }
        "WORKDIR" => {
            let dir = non_empty(rest, "WORKDIR")?;
            if !dir.starts_with('/') {
                return Err("WORKDIR must be an absolute path".into());
            }
            config.set_working_dir(Some(dir.to_owned()));
        }
        "VOLUME" => {
            let mut volumes = config.volumes().clone().unwrap_or_default();
            let list = if rest.starts_with('[') {
                serde_json::from_str::<Vec<String>>(rest).map_err(|e| e.to_string())?
            } else {
                rest.split_whitespace().map(str::to_owned).collect()
            };
            if list.is_empty() {
                return Err("VOLUME needs a path".into());
            }
            for v in list {
                if !v.starts_with('/') {
                    return Err(format!("volume {v:?} is not an absolute path"));
                }
                if !volumes.contains(&v) {
                    volumes.push(v);
                }
            }
            config.set_volumes(Some(volumes));
        }
        "STOPSIGNAL" => {
            config.set_stop_signal(Some(non_empty(rest, "STOPSIGNAL")?.to_owned()));
        }
        "" => return Err("empty change".into()),
        other => {
            return Err(format!(
                "{other} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL"
            ))
        }
    }
    Ok(())
}

fn non_empty<'a>(s: &'a str, what: &str) -> Result<&'a str, String> {
    if s.is_empty() {
        Err(format!("{what} needs a value"))
    } else {
        Ok(s)
    }
}

/// Exec form (a JSON array) or shell form (run by `/bin/sh -c`).
fn command(rest: &str) -> Result<Vec<String>, String> {
    if rest.starts_with('[') {
        if let Ok(argv) = serde_json::from_str::<Vec<String>>(rest) {
            return Ok(argv);
        }
    }
    if rest.is_empty() {
        return Err("needs a command".into());
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// `KEY=VALUE …` (values may be double-quoted) or the legacy `KEY VALUE`.
fn key_values(rest: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    if rest.is_empty() {
        return Err(format!("{what} needs KEY=VALUE"));
    }
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (key, value) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("{what} needs KEY=VALUE"))?;
        return Ok(vec![(key.to_owned(), value.trim().to_owned())]);
    }
    let mut pairs = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{what}: {key:?} is not a KEY=VALUE pair"));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("{what}: unterminated quote in the value of {key}"));
            }
        } else {
            while let Some(c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(*c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Config {
        let mut c = Config::default();
        apply_changes(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        c
    }

    #[test]
    fn exec_and_shell_forms() {
        let c = applied(&[r#"CMD ["sh", "-c", "echo hi"]"#, "ENTRYPOINT top -b"]);
        assert_eq!(c.cmd().clone().unwrap(), vec!["sh", "-c", "echo hi"]);
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            vec!["/bin/sh", "-c", "top -b"]
        );
    }

    #[test]
    fn env_label_expose_volume_user_workdir() {
        let c = applied(&[
            r#"ENV A=1 B="two words""#,
            "ENV A=3",
            "env LEGACY some value",
            "LABEL org.example=yes",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
            r#"VOLUME ["/logs"]"#,
            "USER 1000:1000",
            "WORKDIR /srv",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(
            c.env().clone().unwrap(),
            vec!["B=two words", "A=3", "LEGACY=some value"]
        );
        assert_eq!(c.labels().clone().unwrap()["org.example"], "yes");
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp", "53/udp"]);
        assert_eq!(c.volumes().clone().unwrap(), vec!["/data", "/logs"]);
        assert_eq!(c.user().as_deref(), Some("1000:1000"));
        assert_eq!(c.working_dir().as_deref(), Some("/srv"));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGINT"));
    }

    #[test]
    fn bad_changes_name_the_change() {
        let mut c = Config::default();
        let err = |s: &str| {
            apply_changes(&mut Config::default(), &[s.to_owned()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("RUN make"),
            "invalid change \"RUN make\": RUN is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL"
        );
        assert_eq!(
            err("WORKDIR srv"),
            "invalid change \"WORKDIR srv\": WORKDIR must be an absolute path"
        );
        assert_eq!(
            err("EXPOSE http"),
            "invalid change \"EXPOSE http\": \"http\" is not PORT[/tcp|udp|sctp]"
        );
        assert!(apply_changes(&mut c, &["ENV".into()]).is_err());
        assert!(apply_changes(&mut c, &[r#"ENV A="open"#.into()]).is_err());
    }

    #[test]
    fn import_config_has_host_platform_and_history() {
        let config = import_config(&["CMD [\"sh\"]".into()], Some("from a tarball")).unwrap();
        assert_eq!(config.os().to_string(), Platform::host().os);
        let history = config.history().clone().unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].comment().as_deref(), Some("from a tarball"));
        assert_eq!(
            config.config().clone().unwrap().cmd().clone().unwrap(),
            vec!["sh"]
        );
    }
}
