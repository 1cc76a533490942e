//! `top`'s columns for a host pid, read from /proc (Docker runs `ps -ef`
//! on the host; the same columns without running a program).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}

fn boot_time() -> Option<u64> {
    let stat = fs_err::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn user_name(uid: u32) -> String {
    let passwd = fs_err::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// `UID PID PPID C STIME TTY TIME CMD` for `pid`, or `None` if it is gone.
pub fn ps_row(pid: i32) -> Option<Vec<String>> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).ok()?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces.
    let close = stat.rfind(')')?;
    let comm = &stat[stat.find('(')? + 1..close];
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let ppid = fields.get(1)?.to_string();
    let tty_nr: u64 = fields.get(4)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start: u64 = fields.get(19)?.parse().ok()?;
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let ticks = clock_ticks().max(1);
    let cpu_secs = (utime + stime) / ticks;
    let started = boot_time().map(|b| UNIX_EPOCH + Duration::from_secs(b + start / ticks));
    let elapsed = started
        .and_then(|s| SystemTime::now().duration_since(s).ok())
        .unwrap_or_default()
        .as_secs()
        .max(1);
    let c = (cpu_secs * 100 / elapsed).to_string();
    let stime_text = started
        .map(|s| {
            let t = humantime::format_rfc3339_seconds(s).to_string();
            t.get(11..16).unwrap_or("?").to_owned()
        })
        .unwrap_or_else(|| "?".into());
    let tty = if tty_nr == 0 {
        "?".to_owned()
    } else {
        let major = (tty_nr >> 8) & 0xfff;
        let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
        if major == 136 {
            format!("pts/{minor}")
        } else {
            format!("tty{minor}")
        }
    };
    let time = format!(
        "{:02}:{:02}:{:02}",
        cpu_secs / 3600,
        (cpu_secs / 60) % 60,
        cpu_secs % 60
    );
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ")
    };
    Some(vec![
        user_name(uid),
        pid.to_string(),
        ppid,
        c,
        stime_text,
        tty,
        time,
        cmd,
    ])
}
