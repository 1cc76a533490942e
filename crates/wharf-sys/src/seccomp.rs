//! Installing a compiled seccomp BPF program.
//!
//! The runtime compiles a profile once with libseccomp, keeps the BPF, and
//! installs that program on every start with `seccomp(2)`: compiling a
//! Docker-sized profile costs tens of milliseconds, installing it almost
//! nothing.

#![allow(unsafe_code, reason = "seccomp(2) takes a pointer to a BPF program")]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`.
pub const FLAG_LOG: u32 = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
pub const FLAG_SPEC_ALLOW: u32 = 4;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: the call returns a notify fd.
pub const FLAG_NEW_LISTENER: u32 = 8;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`.
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// Size of one `struct sock_filter` instruction.
const INSN: usize = 8;

/// Installs the BPF `program` (an array of `struct sock_filter`, as
/// `seccomp_export_bpf` writes it) as a seccomp filter of the calling
/// thread with `flags`. Returns the notify fd when `flags` asks for one.
pub fn install_filter(program: &[u8], flags: u32) -> io::Result<Option<OwnedFd>> {
    if program.is_empty()
        || !program.len().is_multiple_of(INSN)
        || program.len() / INSN > usize::from(u16::MAX)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a BPF program",
        ));
    }
    // Instructions are 8-byte structs; copy into an aligned buffer.
    let insns: Vec<libc::sock_filter> = program
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_ptr().cast_mut(),
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    // SAFETY: `prog` points at `insns`, which holds `len` initialised
    // instructions and outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the kernel returned a new descriptor
        // that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_programs_are_refused() {
        assert!(install_filter(&[], 0).is_err());
        assert!(install_filter(&[0; 7], 0).is_err());
    }
}
