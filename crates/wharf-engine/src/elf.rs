//! Whether an executable is statically linked: an ELF file without a
//! `PT_INTERP` program header needs no dynamic loader, so it runs in any
//! image (the `--init` binary must).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const PT_INTERP: u32 = 3;

fn u16_at(b: &[u8], off: usize, le: bool) -> u16 {
    let v = [b[off], b[off + 1]];
    if le {
        u16::from_le_bytes(v)
    } else {
        u16::from_be_bytes(v)
    }
}

fn u32_at(b: &[u8], off: usize, le: bool) -> u32 {
    let v = [b[off], b[off + 1], b[off + 2], b[off + 3]];
    if le {
        u32::from_le_bytes(v)
    } else {
        u32::from_be_bytes(v)
    }
}

fn u64_at(b: &[u8], off: usize, le: bool) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    if le {
        u64::from_le_bytes(v)
    } else {
        u64::from_be_bytes(v)
    }
}

/// `Ok(false)` for a dynamically linked ELF file or anything that is not
/// an ELF executable (a script needs an interpreter too).
pub(crate) fn is_static(path: &Path) -> io::Result<bool> {
    let mut f = fs_err::File::open(path)?;
    let mut header = [0u8; 64];
    if f.read(&mut header)? < 52 || &header[..4] != b"\x7fELF" {
        return Ok(false);
    }
    let wide = header[4] == 2;
    let le = header[5] == 1;
    let (phoff, phentsize, phnum) = if wide {
        (
            u64_at(&header, 0x20, le),
            u16_at(&header, 0x36, le),
            u16_at(&header, 0x38, le),
        )
    } else {
        (
            u64::from(u32_at(&header, 0x1c, le)),
            u16_at(&header, 0x2a, le),
            u16_at(&header, 0x2c, le),
        )
    };
    if phnum == 0 || usize::from(phentsize) < 4 {
        return Ok(false);
    }
    let mut table = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    Ok(table
        .chunks(usize::from(phentsize))
        .all(|ph| u32_at(ph, 0, le) != PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_shell_is_dynamic_and_busybox_static_is_static() {
        assert!(!is_static(Path::new("/bin/sh")).unwrap());
        if Path::new("/bin/busybox").exists() {
            assert!(is_static(Path::new("/bin/busybox")).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        fs_err::write(&script, "#!/bin/sh\n").unwrap();
        assert!(!is_static(&script).unwrap());
    }
}
