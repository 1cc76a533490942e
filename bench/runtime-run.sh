#!/usr/bin/env bash
# bench/runtime-run.sh: latency, peak RSS and syscall count of `RUNTIME run` on a
# busybox bundle running /bin/true, side by side for wharf-runc, crun and runc,
# plus a raw `unshare` baseline. Prints a Markdown report on stdout; progress
# goes to stderr. See bench/README.md for what it measures and the caveats.
#
# Usage: bench/runtime-run.sh [-n N] [--seccomp] [--wharf PATH] [--runtimes "wharf crun runc"]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

BENCH_NAME=runtime-run
SELF=$(readlink -f "${BASH_SOURCE[0]}")
BENCH_DIR=$(dirname "$SELF")
REPO_ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

WARMUP_RUNS=3
RSS_RUNS=5
# Timed runs are split into this many blocks, alternating between runtimes.
ROUNDS=5
UNIFIED=/sys/fs/cgroup/unified
# The raw baseline: the namespaces runc's default spec asks for, nothing else.
RAW_ARGV=(unshare --fork --pid --mount --uts --ipc --net sh -c true)

usage() {
    cat <<EOF
Usage: bench/runtime-run.sh [-n N] [--wharf PATH] [--runtimes "wharf crun runc"]

Times N sequential \`RUNTIME --root STATE run --bundle BUNDLE ID\` (create, start,
wait, delete; a fresh ID each time) of a busybox bundle running /bin/true, and
reports median, mean, min and p90 latency, peak RSS and syscalls per run.

  -n N              timed runs per runtime (default 50)
  --wharf PATH      wharf's runc-compatible binary
                    (default: /usr/local/bin/wharf-runc from scripts/install.sh,
                    else $REPO_ROOT/target/release/wharf-runc)
  --runtimes LIST   space-separated runtimes: "wharf", or a name on PATH, or a path
                    (default: "wharf crun runc"; wharf left out if not built)
  --seccomp         add Wharf's default seccomp profile (Docker-equivalent, from
                    \`wharf-runc spec --seccomp-default\`) to the config: every
                    runtime compiles and installs the same filter on each start
  -h, --help        this text

WHARF_BENCH_KEEP=1 keeps the work dir (bundle, hyperfine JSON, strace
summaries, logs) under /var/tmp; leftover containers are deleted either way.

Needs root, jq, hyperfine, strace, unshare, GNU time (installed if missing),
and busybox-static at /bin/busybox.
EOF
}

# shell_quote ARG...: ARGs as one line a shell would split back into ARGs.
shell_quote() {
    local arg out=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then
            out+=("$arg")
        else
            out+=("'${arg//\'/\'\\\'\'}'")
        fi
    done
    printf '%s\n' "${out[*]}"
}

# is_hybrid_cgroup: cgroup v1 controllers at /sys/fs/cgroup plus a v2 hierarchy
# at /sys/fs/cgroup/unified (systemd's "hybrid" layout).
is_hybrid_cgroup() {
    [[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) != cgroup2fs ]] \
        && [[ $(stat -f -c %T "$UNIFIED" 2>/dev/null) == cgroup2fs ]] \
        && mountpoint -q "$UNIFIED"
}

# private_cgroup_view: called first in the private mount namespace. crun 1.8
# refuses a hybrid host ("cgroups in hybrid mode not supported, drop all
# controllers from cgroupv2"); unmounting the v2 hierarchy here, for every
# runtime alike, makes the host look pure v1 to all of them. runc would
# otherwise also join the v2 hierarchy, which is extra work crun never does.
private_cgroup_view() {
    if is_hybrid_cgroup; then
        umount "$UNIFIED" || die "umount $UNIFIED failed in the private mount namespace"
        ! is_hybrid_cgroup || die "$UNIFIED is still a cgroup2 mount after umount"
    fi
}

# --- inside the private mount namespace -------------------------------------

# run_argv KEY: sets ARGV to the command line of KEY without the container id
# and HAS_ID to 1 when a fresh id must be appended.
run_argv() {
    local key=$1
    case $key in
        rt*)
            local k=${key#rt}
            ARGV=("${BINS[k]}" --root "$WORK/state/$key" run --bundle "$BUNDLE")
            HAS_ID=1
            ;;
        raw)
            ARGV=("${RAW_ARGV[@]}")
            HAS_ID=0
            ;;
        floor)
            ARGV=(/bin/true)
            HAS_ID=0
            ;;
        *) die "unknown measurement $key" ;;
    esac
}

# once KEY TAG [PREFIX_ARGV...]: one run of KEY under PREFIX_ARGV (time,
# strace), container id "$PREFIX-KEY-TAG", output to KEY's log.
once() {
    local key=$1 tag=$2
    shift 2
    local argv=("$@" "${ARGV[@]}")
    if ((HAS_ID)); then argv+=("$PREFIX-$key-$tag"); fi
    "${argv[@]}" </dev/null >>"$WORK/logs/$key.log" 2>&1 \
        || { tail -n 20 "$WORK/logs/$key.log" >&2; die "$key run $tag failed: $(shell_quote "${argv[@]}")"; }
}

# warmup KEY LABEL: WARMUP_RUNS untimed runs of KEY.
warmup() {
    local key=$1 label=$2 i
    run_argv "$key"
    [[ $key != rt* ]] || mkdir -p "$WORK/state/$key"
    log "$label: $WARMUP_RUNS warm-up runs"
    for ((i = 1; i <= WARMUP_RUNS; i++)); do once "$key" "w$i"; done
}

# timed KEY ROUND FIRST COUNT: COUNT timed runs of KEY (ids FIRST..), the
# ROUND-th block of its N runs. Blocks of all runtimes alternate, so a change
# in the machine's load during the run weighs on every runtime alike.
timed() {
    local key=$1 round=$2 first=$3 count=$4 cmd
    run_argv "$key"
    cmd=$(shell_quote "${ARGV[@]}")
    local hf=(hyperfine -N --style none --export-json "$WORK/results/$key.r$round.json")
    if ((HAS_ID)); then
        # One benchmark per id, one run each: the command line differs per run,
        # which hyperfine only allows through a parameter. Ids are plain words.
        hf+=(--runs 1 --parameter-list i "$(seq -s, "$first" $((first + count - 1)))" "$cmd $PREFIX-$key-{i}")
    else
        hf+=(--runs "$count" "$cmd")
    fi
    "${hf[@]}" </dev/null >>"$WORK/logs/$key.hyperfine.log" 2>&1 \
        || { tail -n 20 "$WORK/logs/$key.hyperfine.log" >&2; die "$key: hyperfine failed"; }
}

# footprint KEY LABEL: peak RSS and syscalls of KEY; merges its timed blocks.
footprint() {
    local key=$1 label=$2 i rss max=0
    run_argv "$key"
    jq -s '{results: [.[].results[]]}' "$WORK/results/$key".r*.json >"$WORK/results/$key.json"

    log "$label: peak RSS over $RSS_RUNS runs"
    for ((i = 1; i <= RSS_RUNS; i++)); do
        once "$key" "rss$i" /usr/bin/time -f %M -o "$WORK/results/$key.rss$i"
        rss=$(tail -n 1 "$WORK/results/$key.rss$i")
        [[ $rss =~ ^[0-9]+$ ]] || die "$label: GNU time wrote '$rss', not a KiB count"
        if ((rss > max)); then max=$rss; fi
    done
    echo "$max" >"$WORK/results/$key.rss"

    log "$label: syscalls of one run (strace -f -c)"
    once "$key" strace strace -f -c -o "$WORK/results/$key.strace"
    strace_total_calls "$WORK/results/$key.strace" >"$WORK/results/$key.syscalls" \
        || die "$label: no total line in $WORK/results/$key.strace"

    if ((HAS_ID)); then
        local left
        left=$("${ARGV[0]}" --root "$WORK/state/$key" list -q 2>/dev/null || true)
        [[ -z $left ]] || log "warning: $label left containers behind: $(echo "$left" | tr '\n' ' ')"
    fi
}

inner_main() {
    WORK=$1
    # shellcheck source=/dev/null
    source "$WORK/conf.sh"
    trap 'exit 130' INT
    trap 'exit 143' TERM
    private_cgroup_view

    local k keys=(floor) labels=("/bin/true (timing floor)") round first count
    for k in "${!NAMES[@]}"; do
        keys+=("rt$k")
        labels+=("${NAMES[k]}")
    done
    keys+=(raw)
    labels+=("unshare (raw)")
    # Every runtime binary starts from the same page-cache state: evicted,
    # then read back by its own runs. A binary just written (installed or
    # built) sits in large page-cache folios that map whole on each fault,
    # which inflates its resident set compared with one read from disk.
    for k in "${!NAMES[@]}"; do
        dd if="${BINS[k]}" iflag=nocache count=0 status=none 2>/dev/null \
            || log "warning: could not evict ${BINS[k]} from the page cache"
    done
    for k in "${!keys[@]}"; do warmup "${keys[k]}" "${labels[k]}"; done
    log "timed runs: $N per runtime, in $ROUNDS alternating blocks"
    first=1
    for ((round = 1; round <= ROUNDS; round++)); do
        count=$(((N * round) / ROUNDS - (N * (round - 1)) / ROUNDS))
        for k in "${!keys[@]}"; do timed "${keys[k]}" "$round" "$first" "$count"; done
        first=$((first + count))
    done
    for k in "${!keys[@]}"; do footprint "${keys[k]}" "${labels[k]}"; done
}

# cleanup_main WORK: in a private mount namespace, force-delete every container
# a runtime still knows about in the bench's state dirs.
cleanup_main() {
    WORK=$1
    # shellcheck source=/dev/null
    source "$WORK/conf.sh"
    private_cgroup_view || true
    local k state id ids
    for k in "${!NAMES[@]}"; do
        state=$WORK/state/rt$k
        [[ -d $state ]] || continue
        ids=$("${BINS[k]}" --root "$state" list -q 2>/dev/null || true)
        # A runtime that cannot list still keeps one directory per container.
        ids+=$'\n'$(find "$state" -mindepth 1 -maxdepth 1 -type d -name "$PREFIX-*" -printf '%f\n')
        while IFS= read -r id; do
            [[ -n $id ]] || continue
            log "deleting leftover ${NAMES[k]} container $id"
            "${BINS[k]}" --root "$state" delete -f "$id" >/dev/null 2>&1 \
                || log "warning: ${NAMES[k]} delete -f $id failed"
        done < <(sort -u <<<"$ids")
    done
}

# --- on the host ---------------------------------------------------------------

WORK=
PREFIX=

on_exit() {
    local rc=$?
    trap '' INT TERM
    if [[ -n $WORK && -n $PREFIX && -d $WORK ]]; then
        if [[ -f $WORK/conf.sh ]]; then
            unshare --mount --propagation private -- "$BASH" "$SELF" __cleanup "$WORK" || true
        fi
        # A run killed between creating its cgroups and writing its state leaves
        # cgroup directories named after the container id.
        local dir
        while IFS= read -r -d '' dir; do
            rmdir "$dir" 2>/dev/null || log "warning: could not remove cgroup $dir"
        done < <(find /sys/fs/cgroup -mindepth 2 -maxdepth 8 -depth -type d \
            -name "$PREFIX-*" -print0 2>/dev/null)
        if [[ ${WHARF_BENCH_KEEP:-0} == 1 ]]; then
            log "WHARF_BENCH_KEEP=1: keeping $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}

# resolve_runtime NAME: prints the binary of runtime NAME, as an absolute path
# that keeps its last symlink (a `wharf` linked as wharf-runc selects its CLI
# by that name; the installed wharf-runc is its own lean binary).
resolve_runtime() {
    local name=$1
    case $name in
        wharf)
            [[ -x $WHARF ]] || die "wharf-runc not found at $WHARF (scripts/install.sh, or --wharf PATH)"
            realpath -s "$WHARF"
            ;;
        */*)
            [[ -x $name ]] || die "runtime $name is not an executable"
            realpath -s "$name"
            ;;
        *)
            command -v "$name" >/dev/null 2>&1 || die "runtime $name not found on PATH"
            realpath -s "$(command -v "$name")"
            ;;
    esac
}

main() {
    local invocation n=50 runtimes='' wharf_explicit=0 seccomp=0
    invocation=$(shell_quote "$0" "$@")
    WHARF=/usr/local/bin/wharf-runc
    [[ -x $WHARF ]] || WHARF=$REPO_ROOT/target/release/wharf-runc

    while (($#)); do
        case $1 in
            -n) [[ $# -ge 2 ]] || die "-n needs a value"; n=$2; shift 2 ;;
            -n*) n=${1#-n}; shift ;;
            --wharf) [[ $# -ge 2 ]] || die "--wharf needs a value"; WHARF=$2; wharf_explicit=1; shift 2 ;;
            --wharf=*) WHARF=${1#--wharf=}; wharf_explicit=1; shift ;;
            --runtimes) [[ $# -ge 2 ]] || die "--runtimes needs a value"; runtimes=$2; shift 2 ;;
            --runtimes=*) runtimes=${1#--runtimes=}; shift ;;
            --seccomp) seccomp=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer, got '$n'"
    if [[ -z $runtimes ]]; then
        runtimes="wharf crun runc"
        if [[ ! -x $WHARF ]] && ((!wharf_explicit)); then
            log "wharf-runc not built at $WHARF; measuring crun and runc only"
            runtimes="crun runc"
        fi
    fi

    require_root
    require_cmd jq hyperfine strace unshare mountpoint ldd
    ensure_gnu_time

    local -a names=() bins=()
    local name
    read -r -a names <<<"$runtimes"
    ((${#names[@]})) || die "--runtimes is empty"
    for name in "${names[@]}"; do
        bins+=("$(resolve_runtime "$name")")
    done

    PREFIX=wb$$
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d /var/tmp/wharf-bench.XXXXXX)
    mkdir -p "$WORK"/{state,results,logs}

    log "building busybox bundle in $WORK/bundle"
    build_busybox_bundle "$WORK/bundle"
    local seccomp_note="no seccomp profile"
    if ((seccomp)); then
        [[ -x $WHARF ]] || die "--seccomp needs wharf-runc to write the profile ($WHARF)"
        mkdir -p "$WORK/profile"
        "$WHARF" spec --seccomp-default --bundle "$WORK/profile"
        if ! jq --slurpfile p "$WORK/profile/config.json" '.linux.seccomp = $p[0].linux.seccomp' \
            "$WORK/bundle/config.json" >"$WORK/bundle/config.json.new"; then
            die "could not add the seccomp profile to the bundle"
        fi
        mv "$WORK/bundle/config.json.new" "$WORK/bundle/config.json"
        seccomp_note="Wharf's default seccomp profile ($(jq '[.linux.seccomp.syscalls[].names[]] | length' "$WORK/bundle/config.json") syscall names) in config.json"
    fi

    {
        printf 'N=%q\nROUNDS=%q\nPREFIX=%q\nBUNDLE=%q\n' "$n" "$ROUNDS" "$PREFIX" "$WORK/bundle"
        # -g: conf.sh is sourced inside a function.
        NAMES=("${names[@]}") BINS=("${bins[@]}")
        declare -p NAMES BINS | sed 's/^declare -a /declare -ga /'
    } >"$WORK/conf.sh"

    local cgroup_note="pure cgroup v2 or v1 host; left as is"
    if is_hybrid_cgroup; then
        cgroup_note="hybrid host: every measurement runs in a private mount namespace (\`unshare --mount --propagation private\`) with $UNIFIED unmounted, so all runtimes see cgroup v1 only"
    fi

    local load_start load_end
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    unshare --mount --propagation private -- "$BASH" "$SELF" __inner "$WORK"
    load_end=$(cut -d' ' -f1-3 /proc/loadavg)

    # --- report ---
    local ref_k=0 i
    for i in "${!names[@]}"; do
        if [[ ${names[i]} == wharf ]]; then ref_k=$i; break; fi
    done
    local ref_name=${names[ref_k]}
    local stats ref_median floor_median
    stats=$(timing_stats_ms "$WORK/results/rt$ref_k.json")
    read -r ref_median _ <<<"$stats"
    stats=$(timing_stats_ms "$WORK/results/floor.json")
    read -r floor_median _ <<<"$stats"

    local cpu os
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    os=$(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")

    echo "## \`RUNTIME run\` of a busybox /bin/true bundle"
    echo
    echo "- command: \`$invocation\`"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- host: $os, kernel $(uname -r), CPU ${cpu:-unknown} ($(nproc) cores);" \
        "load average $load_start before, $load_end after"
    echo "- cgroups: $cgroup_note; config.json has no cgroup settings"
    echo "- seccomp: $seccomp_note"
    for i in "${!names[@]}"; do
        echo "- ${names[i]}: \`${bins[i]}\`, $(first_line "${bins[i]}" --version)"
    done
    echo "- timing: $(first_line hyperfine --version) \`-N\`, $WARMUP_RUNS warm-up runs, N=$n timed runs in $ROUNDS blocks alternating between runtimes, a fresh container id per run;" \
        "timing floor (spawning /bin/true the same way): median $(printf '%.2f' "$floor_median") ms"
    echo "- peak RSS: max over $RSS_RUNS runs of GNU time \`%M\` (largest single process of the tree); syscalls: \`strace -f -c\` total calls of one run"
    echo
    echo "| runtime | median ms | mean ms | min ms | p90 ms | peak RSS MB | syscalls | median ratio to $ref_name |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    local key label median mean min p90 rss calls keys=()
    for i in "${!names[@]}"; do keys+=("rt$i"); done
    keys+=(raw)
    for key in "${keys[@]}"; do
        if [[ $key == raw ]]; then label="unshare (raw)"; else label=${names[${key#rt}]}; fi
        stats=$(timing_stats_ms "$WORK/results/$key.json")
        read -r median mean min p90 _ <<<"$stats"
        rss=$(<"$WORK/results/$key.rss")
        calls=$(<"$WORK/results/$key.syscalls")
        printf '| %s | %.2f | %.2f | %.2f | %.2f | %.1f | %s | %.2f |\n' \
            "$label" "$median" "$mean" "$min" "$p90" \
            "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" "$calls" \
            "$(awk -v a="$median" -v b="$ref_median" 'BEGIN { printf "%.2f", a / b }')"
    done
}

case ${1:-} in
    __inner) shift; inner_main "$@" ;;
    __cleanup) shift; cleanup_main "$@" ;;
    *) main "$@" ;;
esac
