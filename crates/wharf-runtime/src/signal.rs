//! Signal names and numbers as `kill` accepts them.

/// Parses `KILL`, `SIGKILL`, `kill`, `9`, `SIGRTMIN+3`.
pub fn parse(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(format!("invalid signal number {n}"))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let offset: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("invalid signal {s:?}"))?
        };
        let n = libc::SIGRTMIN() + offset;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(format!("invalid signal {s:?}"))
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let offset: i32 = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| format!("invalid signal {s:?}"))?
        };
        let n = libc::SIGRTMAX() - offset;
        return if n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(format!("invalid signal {s:?}"))
        };
    }
    let full = format!("SIG{name}");
    full.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGTERM"), Ok(15));
        assert_eq!(parse("hup"), Ok(1));
        assert_eq!(parse("10"), Ok(10));
        assert_eq!(parse("SIGRTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse("0").is_err());
        assert!(parse("SIGBOGUS").is_err());
        assert!(parse("999").is_err());
    }
}
