//! Loading and attaching a cgroup device program (cgroup v2 device
//! control is an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the cgroup).

#![allow(unsafe_code, reason = "bpf(2) takes pointers to a union of attributes")]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads `insns` as a cgroup device program; the verifier's log is in the
/// error when it refuses the program.
///
/// The first load asks for no log: at log level 1 the verifier logs every
/// instruction it walks and fails a load whose log outgrows the buffer with
/// ENOSPC, even for a good program. Only a refused program is loaded again,
/// with a log, to say why.
pub fn load_device_program(insns: &[BpfInsn]) -> io::Result<OwnedFd> {
    let err = match prog_load(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(err) => err,
    };
    let mut log = vec![0u8; 1 << 20];
    match prog_load(insns, Some(&mut log)) {
        // Refused without a log, accepted with one: the kernel changed its
        // mind (memory pressure); take the program.
        Ok(fd) => Ok(fd),
        Err(_) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            // The verifier's verdict is at the end of its log.
            let tail: Vec<&str> = text.trim().lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(if tail.is_empty() {
                err
            } else {
                io::Error::new(err.kind(), format!("{err} (verifier: {})", tail.join("; ")))
            })
        }
    }
}

fn prog_load(insns: &[BpfInsn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is an initialised bpf_attr prefix whose pointers
    // (instructions, license, log buffer when given) are live for the call
    // and sized as stated; the kernel writes only into the log buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: BPF_PROG_LOAD returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// Attaches `program` to the cgroup directory `cgroup`, replacing a device
/// program attached there before (no `BPF_F_ALLOW_MULTI`).
pub fn attach_device_program(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: `attr` is an initialised bpf_attr prefix holding two live
    // descriptors; nothing is written back.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
