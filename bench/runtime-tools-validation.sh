#!/bin/bash
# Run the opencontainers/runtime-tools validation suite against an OCI runtime.
# Usage: bench/runtime-tools-validation.sh RUNTIME_PATH OUTFILE [TEST_NAME...]
#   OUTFILE     TSV: name<TAB>pass|fail|skip|timeout<TAB>ok=N not_ok=N skip=N<TAB>category=cgroup|seccomp|other
#   OUTFILE.d/  <name>.tap (stdout = TAP), <name>.stderr, cleanup.log
# Env: RT_DIR (runtime-tools checkout, default /var/tmp/wharf-rt/runtime-tools),
#      TEST_TIMEOUT (seconds per test, default 60)
# Must run as root. Tests are run from RT_DIR (they need ./runtimetest and ./rootfs-<arch>.tar.gz in cwd).
set -u

RUNTIME_PATH=${1:?usage: $0 RUNTIME_PATH OUTFILE [TEST...]}
OUTFILE=${2:?usage: $0 RUNTIME_PATH OUTFILE [TEST...]}
shift 2
RT_DIR=${RT_DIR:-/var/tmp/wharf-rt/runtime-tools}
TEST_TIMEOUT=${TEST_TIMEOUT:-60}

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
[ -x "$RUNTIME_PATH" ] || { echo "runtime $RUNTIME_PATH not executable" >&2; exit 1; }
[ -x "$RT_DIR/runtimetest" ] || { echo "$RT_DIR/runtimetest missing; build first" >&2; exit 1; }

OUTFILE=$(realpath -m "$OUTFILE")
OUTDIR="$OUTFILE.d"
rm -rf "$OUTDIR"; mkdir -p "$OUTDIR"
: > "$OUTFILE"
LOG="$OUTDIR/cleanup.log"
: > "$LOG"

# Private TMPDIR: bundles (os.MkdirTemp) land here, so leftovers are easy to find.
WORKTMP=$(mktemp -d /var/tmp/wharf-rt-tmp.XXXXXX)
chmod 755 "$WORKTMP"   # must be traversable by user-namespaced container root (linux_uid_mappings)
export TMPDIR="$WORKTMP"

# Only touch things this run created: containers whose bundle is under our TMPDIR,
# mounts under our TMPDIR, and new *empty* cgroups named by the suite (cgrouptest, testdir)
# or after a container id we deleted. Other users of the host (concurrent runtimes) are left alone.
our_ids()     { "$RUNTIME_PATH" list -f json 2>/dev/null | jq -r --arg p "$WORKTMP/" '.[]? | select(.bundle | startswith($p)) | .id'; }
cgroup_dirs() { find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | sort; }
tmp_mounts()  { awk -v p="$WORKTMP/" 'index($5, p)==1 {print $5}' /proc/self/mountinfo; }

PRE_CG=$(cgroup_dirs)
DELETED_IDS=""

cleanup() {
	local tag=$1 id pid r m d b
	# 1. containers created by this run
	for id in $(our_ids); do
		echo "[$tag] delete container $id" >> "$LOG"
		"$RUNTIME_PATH" kill "$id" KILL >/dev/null 2>&1
		"$RUNTIME_PATH" delete --force "$id" >> "$LOG" 2>&1
		DELETED_IDS="$DELETED_IDS $id"
	done
	# 2. any process still rooted in one of our bundles
	for pid in $(ls /proc | grep -E '^[0-9]+$'); do
		r=$(readlink "/proc/$pid/root" 2>/dev/null) || continue
		case "$r" in "$WORKTMP"/*) echo "[$tag] kill pid $pid (root $r)" >> "$LOG"; kill -9 "$pid" 2>/dev/null;; esac
	done
	# 3. mounts left under our TMPDIR (deepest first)
	for m in $(tmp_mounts | sort -r); do
		echo "[$tag] umount $m" >> "$LOG"
		umount -l "$m" >> "$LOG" 2>&1
	done
	# 4. cgroup directories created by the suite (deepest first; rmdir only removes empty ones)
	for d in $(comm -13 <(echo "$PRE_CG") <(cgroup_dirs) | sort -r); do
		case "/$d/" in */cgrouptest/*|*/testdir/*) ;; *)
			b=$(basename "$d")
			case " $DELETED_IDS " in *" $b "*) ;; *) continue ;; esac ;;
		esac
		echo "[$tag] rmdir cgroup $d" >> "$LOG"
		rmdir "$d" >> "$LOG" 2>&1
	done
	# 5. bundle directories
	rm -rf "${WORKTMP:?}"/* 2>/dev/null
}

category() {
	case "$1" in
		*cgroup*|*resources*) echo cgroup ;;
		*seccomp*) echo seccomp ;;
		*) echo other ;;
	esac
}

cd "$RT_DIR" || exit 1
if [ $# -gt 0 ]; then
	TESTS=("$@")
else
	mapfile -t TESTS < <(ls validation/*/*.t | xargs -n1 dirname | xargs -n1 basename | sort)
fi

for name in "${TESTS[@]}"; do
	bin="validation/$name/$name.t"
	tap="$OUTDIR/$name.tap"
	if [ ! -x "$bin" ]; then
		printf '%s\t%s\t%s\tcategory=%s\n' "$name" fail "missing-binary" "$(category "$name")" >> "$OUTFILE"
		continue
	fi
	start=$(date +%s.%N)
	# timeout puts the test in its own process group and kills the whole group on expiry
	timeout -k 10 "$TEST_TIMEOUT" env RUNTIME="$RUNTIME_PATH" "./$bin" < /dev/null > "$tap" 2> "$OUTDIR/$name.stderr"
	rc=$?
	dur=$(echo "$(date +%s.%N) - $start" | bc)
	cleanup "$name"

	# top-level TAP lines only (runtimetest output / YAML diagnostics are indented)
	nok=$(grep -cE '^ok( |$)' "$tap")
	nnotok=$(grep -cE '^not ok( |$)' "$tap")
	nskip=$(grep -ciE '^(not )?ok\b.*#[[:space:]]*skip' "$tap")
	npass=$((nok - $(grep -ciE '^ok\b.*#[[:space:]]*skip' "$tap")))
	# lifecycle/hook tests print no test points, only a YAML {"error": ...} block and "1..0" on failure
	nerr=0
	[ $((nok + nnotok)) -eq 0 ] && nerr=$(grep -cE '^  +"error":' "$tap")
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		st=timeout
	elif [ "$nnotok" -gt 0 ] || [ $rc -ne 0 ] || [ "$nerr" -gt 0 ]; then
		st=fail
	elif [ "$npass" -eq 0 ] && [ "$nskip" -gt 0 ]; then
		st=skip
	else
		st=pass
	fi
	extra=""; [ "$nerr" -gt 0 ] && extra=" yaml_error=$nerr"; [ $rc -ne 0 ] && extra="$extra exit=$rc"
	# *_fail tests print no TAP at all: exit 0 = runtime rejected the bad config as required
	grep -qE '^1\.\.[0-9]+' "$tap" || extra="$extra no_tap"
	printf '%s\t%s\tok=%d not_ok=%d skip=%d%s\tcategory=%s\n' "$name" "$st" "$npass" "$nnotok" "$nskip" "$extra" "$(category "$name")" >> "$OUTFILE"
	printf '%-40s %-8s ok=%d not_ok=%d skip=%d rc=%d %.1fs\n' "$name" "$st" "$npass" "$nnotok" "$nskip" "$rc" "$dur" >&2
done

cleanup final
rmdir "$WORKTMP" 2>/dev/null || echo "warning: $WORKTMP not empty" >&2
echo "summary: $(cut -f2 "$OUTFILE" | sort | uniq -c | tr '\n' ' ')" >&2
