#!/usr/bin/env bash
# Builds the pack scripts/device/cgroup-v2.sh runs on a full cgroup v2 host
# (the `device` machine of this workplace: Ubuntu, no Rust, no internet).
# Output: .devpack/ (ignored by git through .git/info/exclude; carry it):
#   bins.tar.xz    static release wharf, the e2e and wharf-cgroups test
#                  binaries (debug info stripped), Debian's runc and its
#                  libseccomp, busybox-static
#   rt/rt.tar.xz   runtime-tools' runtimetest, rootfs and the cgroup/seccomp/
#                  devices validation binaries (from $RT_DIR, optional)
#   rt/run-validation.sh, dev.sh (a copy of cgroup-v2.sh)
# Then: run `bash .devpack/dev.sh` there with .devpack carried.
set -euo pipefail
cd "$(dirname "$0")/../.."
RT_DIR=${RT_DIR:-/var/tmp/wharf-rt/runtime-tools}
RT_RUNNER=${RT_RUNNER:-bench/runtime-tools-validation.sh}
host=$(rustc -vV | sed -n 's/^host: //p')
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(pkg-config --variable=libdir libseccomp) \
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
	cargo build --release --bin wharf --target "$host"
exe() { cargo test --no-run "$@" 2>&1 | sed -n 's/.*(\(target[^)]*\)).*/\1/p'; }
e2e=$(exe -p wharf --test e2e)
behaviour=$(exe -p wharf-cgroups --test behaviour)
unit=$(exe -p wharf-cgroups --lib)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "target/$host/release/wharf" "$stage/wharf"
objcopy --strip-debug "$e2e" "$stage/e2e"
objcopy --strip-debug "$behaviour" "$stage/behaviour"
objcopy --strip-debug "$unit" "$stage/cgunit"
cp /usr/sbin/runc /bin/busybox "$stage/"
mkdir -p "$stage/lib" && cp /lib/x86_64-linux-gnu/libseccomp.so.2 "$stage/lib/"
grep -qx '/.devpack/' .git/info/exclude 2>/dev/null || echo '/.devpack/' >> .git/info/exclude
rm -rf .devpack && mkdir -p .devpack/rt
tar -C "$stage" -cf - . | xz -T0 -6 > .devpack/bins.tar.xz
cp scripts/device/cgroup-v2.sh .devpack/dev.sh
if [ -x "$RT_DIR/runtimetest" ] && [ -f "$RT_RUNNER" ]; then
	tests=$(ls "$RT_DIR/validation" | grep -E '^linux_cgroups_|^delete_resources$|^delete_only_create_resources$|^linux_seccomp$|^linux_devices$')
	tar -C "$RT_DIR" -cf - runtimetest rootfs-amd64.tar.gz $(for t in $tests; do echo "validation/$t/$t.t"; done) | xz -T0 -6 > .devpack/rt/rt.tar.xz
	# jq and bc are absent there: python3 and awk stand in.
	python3 scripts/device/adapt-runner.py "$RT_RUNNER" > .devpack/rt/run-validation.sh
else
	echo "no runtime-tools build at $RT_DIR: the pack runs Wharf's own tests only" >&2
fi
du -sh .devpack
