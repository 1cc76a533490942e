//! cgroup v2 device control: the device rules become an eBPF program of type
//! `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to the cgroup.
//!
//! The rules keep their v1 meaning (as runc emulates it): a cgroup starts
//! allowing everything; a wildcard rule (`a`, any major and minor, all of
//! `rwm`) resets the default to its allow/deny and drops earlier rules; each
//! later rule is an exception, and the last matching one decides. An allow
//! rule matches when it grants every access asked for; a deny rule when it
//! denies any of them.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use wharf_sys::bpf::BpfInsn;

use crate::error::CgroupError;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// Opcodes (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_MOV_K: u8 = 0xb7;
const JMP_JNE_K: u8 = 0x55;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

fn access_mask(rule: &LinuxDeviceCgroup) -> Result<i32, CgroupError> {
    let access = rule.access().as_deref().unwrap_or("rwm");
    let mut mask = 0;
    for c in access.chars() {
        mask |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            other => {
                return Err(CgroupError::InvalidResources {
                    reason: format!("device rule access {access:?}: unknown {other:?}"),
                })
            }
        };
    }
    Ok(mask)
}

fn is_wildcard(rule: &LinuxDeviceCgroup, mask: i32) -> bool {
    matches!(rule.typ(), None | Some(LinuxDeviceType::A))
        && rule.major().is_none_or(|m| m < 0)
        && rule.minor().is_none_or(|m| m < 0)
        && mask == ACC_ALL
}

/// The program for `rules`: `r0 = 1` allows the access, `r0 = 0` denies it.
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<BpfInsn>, CgroupError> {
    let mut default_allow = true;
    let mut exceptions: Vec<(&LinuxDeviceCgroup, i32)> = Vec::new();
    for rule in rules {
        let mask = access_mask(rule)?;
        if is_wildcard(rule, mask) {
            default_allow = rule.allow();
            exceptions.clear();
        } else {
            exceptions.push((rule, mask));
        }
    }
    // r2 = type, r3 = access, r4 = major, r5 = minor (struct bpf_cgroup_dev_ctx).
    let mut out = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // The last matching rule decides: test them from the last one.
    for (rule, mask) in exceptions.into_iter().rev() {
        // Each test jumps to the end of the block when it does not match;
        // the offsets are patched once the block's length is known.
        let mut block: Vec<(BpfInsn, bool)> = Vec::new();
        match rule.typ() {
            Some(LinuxDeviceType::B) => block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK), true)),
            Some(LinuxDeviceType::C | LinuxDeviceType::U) => {
                block.push((insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR), true))
            }
            Some(LinuxDeviceType::P) => {
                return Err(CgroupError::InvalidResources {
                    reason: "device rule type p: the device controller knows a, b and c".into(),
                })
            }
            None | Some(LinuxDeviceType::A) => {}
        }
        if mask != ACC_ALL || !rule.allow() {
            block.push((insn(ALU64_MOV_X, 6, 3, 0, 0), false));
            block.push((insn(ALU32_AND_K, 6, 0, 0, mask), false));
            if rule.allow() {
                // Allow only what the rule grants entirely.
                block.push((insn(JMP_JNE_X, 6, 3, 0, 0), true));
            } else {
                // Deny when any access asked for is denied.
                block.push((insn(JMP_JEQ_K, 6, 0, 0, 0), true));
            }
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            let major = i32::try_from(major).map_err(|_| CgroupError::InvalidResources {
                reason: format!("device major {major} is out of range"),
            })?;
            block.push((insn(JMP_JNE_K, 4, 0, 0, major), true));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            let minor = i32::try_from(minor).map_err(|_| CgroupError::InvalidResources {
                reason: format!("device minor {minor} is out of range"),
            })?;
            block.push((insn(JMP_JNE_K, 5, 0, 0, minor), true));
        }
        block.push((insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = i16::try_from(len - i - 1).expect("a rule block is a few instructions");
            }
            out.push(ins);
        }
    }
    out.push(insn(ALU64_MOV_K, 0, 0, 0, i32::from(default_allow)));
    out.push(insn(EXIT, 0, 0, 0, 0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: serde_json::Value) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn no_rules_allow_everything() {
        let p = program(&[]).unwrap();
        assert_eq!(p.len(), 8);
        assert_eq!(p[6], insn(ALU64_MOV_K, 0, 0, 0, 1));
    }

    #[test]
    fn deny_all_then_one_allow() {
        let p = program(&rules(serde_json::json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
        ])))
        .unwrap();
        // prologue 6, block: type, major, minor, mov, exit = 5, epilogue 2.
        assert_eq!(p.len(), 13);
        assert_eq!(p[6], insn(JMP_JNE_K, 2, 0, 4, DEV_CHAR));
        assert_eq!(p[7], insn(JMP_JNE_K, 4, 0, 3, 1));
        assert_eq!(p[8], insn(JMP_JNE_K, 5, 0, 2, 5));
        assert_eq!(p[9], insn(ALU64_MOV_K, 0, 0, 0, 1));
        assert_eq!(p[11], insn(ALU64_MOV_K, 0, 0, 0, 0), "default deny");
    }

    #[test]
    fn partial_access_rules_use_the_mask() {
        let p = program(&rules(serde_json::json!([
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}
        ])))
        .unwrap();
        assert!(p.contains(&insn(ALU32_AND_K, 6, 0, 0, ACC_WRITE)));
        assert!(p.contains(&insn(JMP_JEQ_K, 6, 0, 4, 0)));
        assert_eq!(
            p[p.len() - 2],
            insn(ALU64_MOV_K, 0, 0, 0, 1),
            "default allow"
        );
        assert!(program(&rules(serde_json::json!([{"allow": true, "access": "rx"}]))).is_err());
    }
}
