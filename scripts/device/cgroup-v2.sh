#!/bin/bash
# Device-machine check for issue 3 (cgroup v2): Wharf's cgroup/seccomp tests and
# runtime-tools' cgroup tests, Wharf and runc side by side, on a full v2 host.
set -u
D=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
T0=$(date +%s)
el() { echo "[+$(( $(date +%s) - T0 ))s] $*"; }

el "== env"
uname -r; grep PRETTY /etc/os-release; nproc
echo "pid1: $(cat /proc/1/comm)  systemd: $([ -d /run/systemd/system ] && echo yes || echo no)"
echo "self cgroup: $(cat /proc/self/cgroup)"
grep cgroup /proc/self/mountinfo
echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "subtree: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

el "== unpack"
mkdir -p /opt/w /opt/rt
python3 - "$D" <<'EOF'
import sys, tarfile
d = sys.argv[1]
tarfile.open(d + "/bins.tar.xz").extractall("/opt/w")
tarfile.open(d + "/rt/rt.tar.xz").extractall("/opt/rt")
EOF
cp -f /opt/w/busybox /bin/busybox
printf '#!/bin/sh\nLD_LIBRARY_PATH=/opt/w/lib exec /opt/w/runc "$@"\n' > /opt/w/runc-wrap
chmod 755 /opt/w/runc-wrap
/opt/w/runc-wrap --version | head -1
/opt/w/wharf runtime --version 2>&1 | head -1
# The e2e binary runs env!("CARGO_BIN_EXE_wharf") and caches its rootfs under the
# workspace's target dir, both absolute paths from the build machine.
mkdir -p /work/main/target/debug /work/main/crates/wharf-testkit
[ -e /work/main/target/debug/wharf ] || ln -s /opt/w/wharf /work/main/target/debug/wharf

el "== cgroup v2: move every process out of the namespace root, delegate all controllers"
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
	mkdir -p /sys/fs/cgroup/devinit
	for i in 1 2 3; do
		for p in $(cat /sys/fs/cgroup/cgroup.procs); do echo "$p" > /sys/fs/cgroup/devinit/cgroup.procs 2>/dev/null; done
	done
	echo "left in root: $(wc -l < /sys/fs/cgroup/cgroup.procs)"
	for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control || echo "enable $c failed"; done
	echo "subtree now: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
	echo "self cgroup now: $(cat /proc/self/cgroup)"
fi

el "== wharf-cgroups unit + behaviour tests"
cd /opt/w
WHARF_TEST_STRICT=1 timeout 120 ./cgunit --test-threads 4 2>&1 | tail -5
WHARF_TEST_STRICT=1 timeout 180 ./behaviour --test-threads 1 2>&1 | grep -E "^test |SKIP|panicked|test result|assert" | tee "$OUT/behaviour.txt"

el "== e2e tests, one process each (as nextest)"
./e2e --list --format terse 2>/dev/null | sed -n 's/: test$//p' > /tmp/e2e.list
[ -n "${DEV_QUICK:-}" ] && { grep -E "cgroups::|seccomp::" /tmp/e2e.list | head -3 > /tmp/e2e.q; mv /tmp/e2e.q /tmp/e2e.list; }
echo "$(wc -l < /tmp/e2e.list) e2e tests"
run_one() {
	local t=$1 o
	o=$(timeout 120 /opt/w/e2e --exact "$t" --test-threads 1 --nocapture 2>&1); rc=$?
	if echo "$o" | grep -q "^SKIP"; then echo "SKIP $t: $(echo "$o" | grep -m1 '^SKIP' | sed 's/.*needs/needs/')"
	elif [ $rc = 0 ]; then echo "PASS $t"
	else echo "FAIL $t rc=$rc"; echo "$o" | tail -25 | sed 's/^/    /'; fi
}
export -f run_one
xargs -P 8 -I{} bash -c 'run_one "$@"' _ {} < /tmp/e2e.list > "$OUT/e2e.txt" 2>&1
grep -c ^PASS "$OUT/e2e.txt"; grep -E "^(FAIL|SKIP)" "$OUT/e2e.txt"

el "== systemd driver"
/opt/w/wharf runtime --systemd-cgroup list 2>&1 | head -3

el "== runtime-tools cgroup tests (v2), wharf then runc"
cd /opt/rt
TESTS=$(ls validation)
[ -n "${DEV_QUICK:-}" ] && TESTS="linux_cgroups_pids linux_cgroups_relative_cpus"
ln -sf wharf /opt/w/wharf-runc
RT_DIR=/opt/rt TEST_TIMEOUT=30 bash "$D/rt/run-validation.sh" /opt/w/wharf-runc "$OUT/rt-wharf.tsv" $TESTS 2>&1 | grep -v "^\[" | tail -40
el "-- runc"
RT_DIR=/opt/rt TEST_TIMEOUT=30 bash "$D/rt/run-validation.sh" /opt/w/runc-wrap "$OUT/rt-runc.tsv" $TESTS 2>&1 | tail -40
python3 - "$OUT" <<'PY'
import sys, tarfile, os
o = sys.argv[1]
with tarfile.open(o + "/rt-details.tar.gz", "w:gz") as t:
    for n in ("rt-wharf.tsv.d", "rt-runc.tsv.d"):
        if os.path.isdir(o + "/" + n):
            t.add(o + "/" + n, arcname=n)
PY
rm -rf "$OUT/rt-wharf.tsv.d" "$OUT/rt-runc.tsv.d"
el "== side by side"
join -t $'\t' <(cut -f1,2 "$OUT/rt-wharf.tsv" | sort) <(cut -f1,2 "$OUT/rt-runc.tsv" | sort) | awk -F'\t' '{printf "%-36s wharf=%-8s runc=%s\n",$1,$2,$3}'
el done
