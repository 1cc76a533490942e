#!/usr/bin/env bash
# bench/engine-run.sh: the engine-level costs of Wharf side by side with podman
# and docker, in one run on one machine:
#
#   1. `run --rm --network none IMAGE /bin/true` latency: wharf, podman (runc),
#      docker, plus the runtime-only path (`wharf-runc run --bundle`) and crun
#      on an OCI bundle of the same rootfs;
#   2. `exec C /bin/true` latency into a running `sleep 1000`;
#   3. `ps -a` latency with 500 created (not started) containers;
#   4. client peak RSS (GNU time %M) of `wharf run --rm` and `wharf ps -a`;
#   5. memory of the per-container monitor process (wharf's `__monitor`,
#      podman's conmon, docker's containerd-shim) over 20 running containers.
#
# One busybox image for everyone: the rootfs of lib.sh's busybox bundle
# (bin/busybox, a symlink per applet, etc/passwd, etc/group), tarred and
# imported into each engine (`wharf import`, `podman import`, `docker import`).
# Every engine gets private state under /var/tmp/wharf-bench/engine-*; the whole
# benchmark runs in a private mount namespace with tmpfs over /run and
# /var/lib (podman and docker write there whatever their --root says), and
# with the cgroup2 hierarchy of a hybrid host unmounted (crun refuses hybrid
# hosts; see runtime-run.sh). docker (Debian's docker.io) is started with its
# data-root, exec-root and socket under /var/tmp/wharf-bench/engine-docker and
# stopped at the end; without dockerd its rows say "not measured".
#
# Markdown report on stdout, progress on stderr, raw hyperfine JSON and per-
# process memory tables in /var/tmp/wharf-bench/results/engine-run-<UTC time>/.
#
# Usage: bench/engine-run.sh [-n N] [--ps-count N] [--ps-engines "wharf podman docker"]
#                            [--monitors N] [--prefix DIR] [--no-docker]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

BENCH_NAME="engine-run"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
BENCH_DIR=$(dirname "$SELF")
REPO_ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

BASE=/var/tmp/wharf-bench
WARMUP_RUNS=3
RSS_RUNS=5
UNIFIED=/sys/fs/cgroup/unified
# Cgroup parents the engines create under each v1 hierarchy.
CGROUP_PARENTS=(wharf libpod_parent docker)

usage() {
    cat <<EOF
Usage: bench/engine-run.sh [options]

  -n N                 timed runs per command for run and exec (default 30, in
                       $((3)) blocks alternating between engines; at least 20)
  --ps-count N         containers created for the ps -a measurement (default 500)
  --ps-engines LIST    engines that create them (default "wharf podman docker")
  --monitors N         running containers for the monitor memory (default 20)
  --prefix DIR         where scripts/install.sh put bin/wharf and bin/wharf-runc
                       (default $BASE/prefix)
  --no-docker          leave docker out even when dockerd is installed
  -h, --help           this text

WHARF_BENCH_KEEP=1 keeps the engines' state dirs ($BASE/engine-*).
Needs root, hyperfine, jq, podman, runc, crun, busybox-static, GNU time;
docker.io (dockerd) for the docker rows.
EOF
}

# --- shared helpers ------------------------------------------------------------

ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
# median_of_file FILE: median of the numbers in FILE, one a line.
median_of_file() {
    sort -g "$1" | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'
}
mem_available_kib() { awk '/^MemAvailable:/ { print $2 }' /proc/meminfo; }
# memcg_kib: memory charged to the bench's own memory cgroup (every process
# the bench starts, monitors included, but not the containers, which the
# engines move to cgroups of their own), or 0 without one.
memcg_kib() {
    if [[ -n ${MEMCG_USAGE:-} ]]; then echo $(($(<"$MEMCG_USAGE") / 1024)); else echo 0; fi
}

# pids_in_ns NS: processes whose mount namespace is NS (a `mnt:[inode]` link).
pids_in_ns() {
    local ns=$1 p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && echo "${p#/proc/}"
    done
    return 0
}

# descendants PID...: PID and every process below it (from one ps snapshot).
descendants() {
    ps -e -o pid=,ppid= | awk -v roots="$*" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            changed = 1
            while (changed) {
                changed = 0
                for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
            }
            for (p in keep) print p
        }'
}

# --- inside the private mount namespace -----------------------------------------

# Set by inner_main.
WORK='' RES='' WHARF='' WHARF_RUNC='' WR='' PR='' DR='' BUNDLE='' HAVE_DOCKER=0 DOCKERD_PID=''
declare -A CMD=() PARAM=()
PODMAN=()
DOCKER=(/usr/bin/docker)

isolate_mounts() {
    mount -t tmpfs wharf-bench /run
    if [[ -d /var/lib/containers ]]; then
        mount -t tmpfs wharf-bench /var/lib/containers
    else
        mount -t tmpfs wharf-bench /var/lib
    fi
    # dockerd 20.10 writes /etc/docker/key.json whatever its data-root.
    [[ ! -d /etc/docker ]] || mount -t tmpfs wharf-bench /etc/docker
    if [[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) != cgroup2fs ]] \
        && [[ $(stat -f -c %T "$UNIFIED" 2>/dev/null) == cgroup2fs ]] && mountpoint -q "$UNIFIED"; then
        umount "$UNIFIED" || die "umount $UNIFIED failed in the private mount namespace"
        CGROUP_NOTE="hybrid host: $UNIFIED unmounted in the private namespace, every engine sees cgroup v1"
    else
        CGROUP_NOTE="host cgroups left as they are"
    fi
}

unmount_under() { # deepest first
    local m
    while IFS= read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done < <(awk -v p="$1" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

inner_cleanup() {
    local rc=$? id ids=()
    trap '' INT TERM
    log "cleaning up"
    if ((HAVE_DOCKER)) && [[ -n $DOCKERD_PID ]]; then
        mapfile -t ids < <("${DOCKER[@]}" ps -aq 2>/dev/null || true)
        ((!${#ids[@]})) || "${DOCKER[@]}" rm -f "${ids[@]}" >/dev/null 2>&1 || log "warning: docker rm -f failed"
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" 2>/dev/null || true
    fi
    if ((${#PODMAN[@]})); then
        "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || log "warning: podman rm -af failed"
    fi
    if [[ -n $WHARF && -d $WR ]]; then
        mapfile -t ids < <("$WHARF" --root "$WR" ps -aq 2>/dev/null || true)
        ((!${#ids[@]})) || "$WHARF" --root "$WR" rm -f "${ids[@]}" >/dev/null 2>&1 || log "warning: wharf rm -f failed"
    fi
    local rt
    for rt in wharf-runc crun; do
        [[ -d $WORK/state/$rt ]] || continue
        local bin=$WHARF_RUNC
        [[ $rt == crun ]] && bin=crun
        mapfile -t ids < <("$bin" --root "$WORK/state/$rt" list -q 2>/dev/null || true)
        for id in "${ids[@]}"; do "$bin" --root "$WORK/state/$rt" delete -f "$id" >/dev/null 2>&1 || true; done
    done
    # Whatever is left in this namespace (monitors, conmon, shims) and below it.
    local ns left=()
    ns=$(readlink /proc/$$/ns/mnt)
    mapfile -t left < <(pids_in_ns "$ns" | grep -vx -e "$$" || true)
    if ((${#left[@]})); then
        local p
        mapfile -t left < <(descendants "${left[@]}" | grep -vx -e "$$" || true)
        local alive=()
        for p in "${left[@]}"; do [[ ! -e /proc/$p ]] || alive+=("$p"); done
        left=("${alive[@]}")
        for p in "${left[@]}"; do
            log "killing leftover process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"
        done
        kill -KILL "${left[@]}" 2>/dev/null || true
        sleep 0.5
    fi
    unmount_under "$BASE/engine-"
    exit "$rc"
}

# hf KEY TAG RUNS WARMUP: one hyperfine -N block of KEY's command.
hf() {
    local key=$1 tag=$2 runs=$3 warmup=$4
    local args=(hyperfine -N --style none --warmup "$warmup" --export-json "$RES/$key.$tag.json")
    if [[ -n ${PARAM[$key]:-} ]]; then
        # A fresh container id per run: one benchmark per id, one run each.
        args+=(--runs 1 --parameter-list i "$(seq -s, "${PARAM[$key]}" $((PARAM[$key] + runs - 1)))")
        PARAM[$key]=$((PARAM[$key] + runs))
    else
        args+=(--runs "$runs")
    fi
    if ! "${args[@]}" "${CMD[$key]}" </dev/null >>"$WORK/$key.hyperfine.log" 2>&1; then
        tail -n 5 "$WORK/$key.hyperfine.log" >&2
        log "$key failed; its output, run once more:"
        # shellcheck disable=SC2086 # the command line is plain words
        ${CMD[$key]//\{i\}/x} </dev/null >&2 || true
        die "$key: hyperfine failed: ${CMD[$key]}"
    fi
}

# settle SECONDS: flushes what setup and earlier sections wrote and waits,
# so that no engine's first block pays for them. On an ext4 without a
# journal (this VM's root) every new inode's allocation skips the inodes
# freed in the last 60 s, 360 s while their inode-table block is still dirty
# (fs/ext4/ialloc.c, recently_deleted): right after setup's image imports
# (thousands of files made and deleted) each inode an engine creates costs
# a long scan, and whichever engine ran first paid for it (the first wharf
# block measured 38-42 ms against 22-30 ms for the next two).
settle() {
    sync
    sleep "$1"
}

# blocks PREFIX N KEY...: N timed runs of each KEY's command in 3 blocks that
# alternate between the keys, 3 warm-up runs before each block (made by hand
# for the per-id commands); merges each key's blocks into RES/PREFIX-KEY.json.
# Each round starts with the next key (round 2: key 2, 3, …, 1), so that no
# engine always runs right after the same one or first after `settle`.
blocks() {
    local prefix=$1 n=$2 rounds=3 round count key i
    shift 2
    local keys=("$@")
    # The run section creates and deletes the most inodes: a full minute.
    if [[ $prefix == run ]]; then settle 60; else settle 1; fi
    for ((round = 1; round <= rounds; round++)); do
        count=$(((n * round) / rounds - (n * (round - 1)) / rounds))
        local order=("${keys[@]:round-1}" "${keys[@]:0:round-1}")
        for key in "${order[@]}"; do
            if [[ -n ${PARAM[$key]:-} ]]; then
                hf "$key" "$prefix.w$round" "$WARMUP_RUNS" 0
                rm -f "$RES/$key.$prefix.w$round.json"
                hf "$key" "$prefix.r$round" "$count" 0
            else
                hf "$key" "$prefix.r$round" "$count" "$WARMUP_RUNS"
            fi
        done
    done
    for key in "$@"; do
        jq -s '{results: [.[].results[]]}' "$RES/$key.$prefix".r*.json >"$RES/$prefix-$key.json"
        rm -f "$RES/$key.$prefix".r*.json
    done
}

# median_ms FILE: median in ms of a merged hyperfine JSON, or "-".
median_ms() {
    if [[ -f $1 ]]; then timing_stats_ms "$1" | cut -f1; else echo -; fi
}

# peak_rss OUT CMD...: the largest GNU time %M (KiB) over RSS_RUNS runs of CMD.
peak_rss() {
    local out=$1 i max=0 k
    shift
    for ((i = 1; i <= RSS_RUNS; i++)); do
        /usr/bin/time -f %M -o "$WORK/rss" "$@" </dev/null >/dev/null 2>>"$WORK/rss.log" \
            || die "peak RSS run failed: $*"
        k=$(tail -n 1 "$WORK/rss")
        [[ $k =~ ^[0-9]+$ ]] || die "GNU time wrote '$k'"
        ((k > max)) && max=$k
    done
    echo "$max" >"$out"
}

# engine_cli ENGINE: sets E to the engine's command line (without verb).
engine_cli() {
    case $1 in
        wharf) E=("$WHARF" --root "$WR") ;;
        podman) E=("${PODMAN[@]}") ;;
        docker) E=("${DOCKER[@]}") ;;
    esac
    # `rm -f`: wharf and docker kill at once; podman sends SIGTERM and waits
    # 10 s first, which `sleep` as pid 1 ignores.
    RMF=(rm -f)
    [[ $1 != podman ]] || RMF=(rm -f -t 0)
}
engine_image() {
    case $1 in
        wharf) echo bench/busybox:latest ;;
        podman) echo localhost/bench/busybox:latest ;;
        docker) echo bench/busybox:latest ;;
    esac
}

# monitor_memory ENGINE COUNT PATTERN: COUNT detached `sleep 1000` containers;
# per monitor (the parent of each container's init, whose cmdline matches
# PATTERN): VmRSS, RssAnon, RssFile from status, Pss, Private_Clean,
# Private_Dirty from smaps_rollup; MemAvailable before and after. Removes them.
monitor_memory() {
    local engine=$1 count=$2 pattern=$3 i before after removed pid ppid img out=$RES/monitors-$1.tsv
    engine_cli "$engine"
    img=$(engine_image "$engine")
    sync
    sleep 1
    before=$(for _ in 1 2 3; do mem_available_kib; sleep 0.3; done | sort -n | sed -n 2p)
    local cg_before cg_after cg_removed
    cg_before=$(memcg_kib)
    for ((i = 1; i <= count; i++)); do
        "${E[@]}" run -d --name "wb-mon-$i" --network none "$img" sleep 1000 >/dev/null \
            || die "$engine run -d wb-mon-$i failed"
    done
    sleep 2
    after=$(for _ in 1 2 3; do mem_available_kib; sleep 0.3; done | sort -n | sed -n 2p)
    cg_after=$(memcg_kib)
    printf 'name\tinit_pid\tmonitor_pid\tVmRSS\tRssAnon\tRssFile\tPss\tPrivate_Clean\tPrivate_Dirty\tcmdline\n' >"$out"
    for ((i = 1; i <= count; i++)); do
        pid=$("${E[@]}" inspect -f '{{.State.Pid}}' "wb-mon-$i")
        [[ $pid =~ ^[1-9][0-9]*$ ]] || die "$engine inspect wb-mon-$i: pid '$pid'"
        ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")
        local cmdline
        cmdline=$(tr '\0' ' ' <"/proc/$ppid/cmdline")
        [[ $cmdline == *"$pattern"* ]] || die "$engine: parent $ppid of wb-mon-$i's init $pid is '$cmdline', not $pattern"
        printf 'wb-mon-%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$pid" "$ppid" \
            "$(awk '/^VmRSS:/ { print $2 }' "/proc/$ppid/status")" \
            "$(awk '/^RssAnon:/ { print $2 }' "/proc/$ppid/status")" \
            "$(awk '/^RssFile:/ { print $2 }' "/proc/$ppid/status")" \
            "$(awk '/^Pss:/ { print $2 }' "/proc/$ppid/smaps_rollup")" \
            "$(awk '/^Private_Clean:/ { print $2 }' "/proc/$ppid/smaps_rollup")" \
            "$(awk '/^Private_Dirty:/ { print $2 }' "/proc/$ppid/smaps_rollup")" \
            "${cmdline:0:120}" >>"$out"
    done
    local names=()
    for ((i = 1; i <= count; i++)); do names+=("wb-mon-$i"); done
    "${E[@]}" "${RMF[@]}" "${names[@]}" >/dev/null || die "$engine rm -f of the monitor containers failed"
    sleep 2
    removed=$(for _ in 1 2 3; do mem_available_kib; sleep 0.3; done | sort -n | sed -n 2p)
    cg_removed=$(memcg_kib)
    echo "$before $after $removed" >"$RES/memavail-$engine"
    echo "$cg_before $cg_after $cg_removed" >"$RES/memcg-$engine"
}

# create_many ENGINE COUNT: COUNT created (not started) containers.
create_many() {
    local engine=$1 count=$2 i img t0 t1
    engine_cli "$engine"
    img=$(engine_image "$engine")
    t0=$(date +%s.%N)
    for ((i = 1; i <= count; i++)); do
        "${E[@]}" create --network none "$img" /bin/true >/dev/null || die "$engine create #$i failed"
    done
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v n="$count" 'BEGIN { printf "%.1f\n", (b - a) * 1000 / n }' >"$RES/create-$engine.ms"
}

start_docker() {
    local d=$BASE/engine-docker
    mkdir -p "$d"/{data,exec,client}
    echo '{}' >"$d/daemon.json"
    # podman reads DOCKER_CONFIG too (for credentials) and wants the file there.
    echo '{}' >"$d/client/config.json"
    export DOCKER_HOST=unix://$d/docker.sock DOCKER_CONFIG=$d/client
    dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
        --pidfile "$d/docker.pid" -H "$DOCKER_HOST" --bridge none --iptables=false \
        --ip6tables=false --ip-masq=false --storage-driver overlay2 --log-level warn \
        --exec-opt native.cgroupdriver=cgroupfs >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 150); do
        "${DOCKER[@]}" version >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.2
    done
    tail -n 20 "$WORK/dockerd.log" >&2
    log "warning: dockerd did not come up (log above); docker not measured"
    DOCKER_WHY="dockerd did not start: $(tail -n 1 "$WORK/dockerd.log")"
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
    return 1
}

inner_main() {
    WORK=$1
    # shellcheck source=/dev/null
    source "$WORK/conf.sh"
    trap inner_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    isolate_mounts
    # A memory cgroup of the bench's own (made by main), joined here.
    if [[ -n ${MEMCG:-} && -d $MEMCG ]]; then
        echo $$ >"$MEMCG/cgroup.procs"
        if [[ -f $MEMCG/memory.usage_in_bytes ]]; then MEMCG_USAGE=$MEMCG/memory.usage_in_bytes
        elif [[ -f $MEMCG/memory.current ]]; then MEMCG_USAGE=$MEMCG/memory.current; fi
    fi

    WR=$BASE/engine-wharf
    PR=$BASE/engine-podman
    DR=$BASE/engine-docker
    mkdir -p "$WR" "$PR"/{root,runroot,tmp,net} "$WORK/state"

    # --- the image --------------------------------------------------------------
    log "building the busybox rootfs and bundle"
    BUNDLE=$WORK/bundle
    build_busybox_bundle "$BUNDLE"
    tar -C "$BUNDLE/rootfs" --numeric-owner --sort=name -cf "$WORK/busybox.tar" .
    "$WHARF" --root "$WR" import "$WORK/busybox.tar" bench/busybox:latest >/dev/null \
        || die "wharf import failed"

    # podman's defaults for root (nofile 1048576, nproc 4194304) are above the
    # host's hard limits, and without CAP_SYS_RESOURCE (not in this VM's
    # bounding set) runc cannot raise them: "error setting rlimit type 6". podman
    # also lowers its own RLIMIT_NPROC to 32768, which its children inherit.
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [[ $nofile =~ ^[0-9]+$ ]] && ((nofile <= 1048576)) || nofile=1048576
    [[ $nproc =~ ^[0-9]+$ ]] && ((nproc <= 32768)) || nproc=32768
    cat >"$PR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$PR/tmp"
[network]
network_config_dir = "$PR/net"
EOF
    cat >"$PR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PR/root"
runroot = "$PR/runroot"
EOF
    export CONTAINERS_CONF=$PR/containers.conf CONTAINERS_STORAGE_CONF=$PR/storage.conf
    PODMAN=(podman --root "$PR/root" --runroot "$PR/runroot" --storage-driver overlay
        --tmpdir "$PR/tmp" --network-config-dir "$PR/net" --cgroup-manager cgroupfs
        --events-backend none --runtime runc)
    "${PODMAN[@]}" import -q "$WORK/busybox.tar" localhost/bench/busybox:latest >/dev/null \
        || die "podman import failed"

    DOCKER_WHY=${DOCKER_WHY:-}
    if ((WANT_DOCKER)); then
        log "starting dockerd (data-root $DR/data)"
        if start_docker; then
            HAVE_DOCKER=1
            "${DOCKER[@]}" import "$WORK/busybox.tar" bench/busybox:latest >/dev/null \
                || die "docker import failed"
        fi
    fi
    local engines=(wharf podman)
    ((HAVE_DOCKER)) && engines+=(docker)

    # --- 1. run --rm --network none ------------------------------------------------
    local e
    for e in "${engines[@]}"; do
        engine_cli "$e"
        CMD[run-$e]="${E[*]} run --rm --network none $(engine_image "$e") /bin/true"
    done
    mkdir -p "$WORK/state/wharf-runc" "$WORK/state/crun"
    CMD[run-wharf-runc]="$WHARF_RUNC --root $WORK/state/wharf-runc run --bundle $BUNDLE wbr{i}"
    PARAM[run-wharf-runc]=1
    CMD[run-crun]="crun --root $WORK/state/crun run --bundle $BUNDLE wbc{i}"
    PARAM[run-crun]=1
    local run_keys=()
    for e in "${engines[@]}" wharf-runc crun; do run_keys+=("run-$e"); done
    log "run --rm: $N timed runs each (${run_keys[*]})"
    blocks run "$N" "${run_keys[@]}"

    # --- 2. exec -------------------------------------------------------------------
    local exec_keys=()
    for e in "${engines[@]}"; do
        engine_cli "$e"
        "${E[@]}" run -d --name wb-exec --network none "$(engine_image "$e")" sleep 1000 >/dev/null \
            || die "$e run -d wb-exec failed"
        CMD[exec-$e]="${E[*]} exec wb-exec /bin/true"
        exec_keys+=("exec-$e")
    done
    log "exec: $N timed runs each"
    blocks exec "$N" "${exec_keys[@]}"
    for e in "${engines[@]}"; do
        engine_cli "$e"
        "${E[@]}" "${RMF[@]}" wb-exec >/dev/null || die "$e rm -f wb-exec failed"
    done

    # --- 3. client peak RSS (small store) --------------------------------------------
    log "client peak RSS of run --rm"
    for e in "${engines[@]}"; do
        engine_cli "$e"
        peak_rss "$RES/rss-run-$e" "${E[@]}" run --rm --network none "$(engine_image "$e")" /bin/true
    done

    # --- 4. monitor memory ---------------------------------------------------------
    log "monitor memory: $MONITORS running containers per engine"
    monitor_memory wharf "$MONITORS" __monitor
    monitor_memory podman "$MONITORS" conmon
    ((HAVE_DOCKER)) && monitor_memory docker "$MONITORS" containerd-shim

    # --- 5. ps -a with PS_COUNT created containers -----------------------------------
    local ps_keys=()
    for e in $PS_ENGINES; do
        [[ $e != docker ]] || ((HAVE_DOCKER)) || continue
        log "ps: creating $PS_COUNT $e containers"
        create_many "$e" "$PS_COUNT"
        engine_cli "$e"
        CMD[ps-$e]="${E[*]} ps -a"
        ps_keys+=("ps-$e")
    done
    log "ps -a: $N timed runs each"
    blocks ps "$N" "${ps_keys[@]}"
    peak_rss "$RES/rss-ps-wharf" "$WHARF" --root "$WR" ps -a
    "$WHARF" --root "$WR" ps -a | tail -n +2 | wc -l >"$RES/ps-rows-wharf"

    # Cleanup of the created containers before the trap: cheaper in bulk.
    log "removing the created containers"
    local ids=()
    mapfile -t ids < <("$WHARF" --root "$WR" ps -aq)
    ((!${#ids[@]})) || "$WHARF" --root "$WR" rm "${ids[@]}" >/dev/null || log "warning: wharf rm failed"
    "${PODMAN[@]}" rm -a >/dev/null 2>&1 || log "warning: podman rm -a failed"
    ((HAVE_DOCKER)) && { "${DOCKER[@]}" container prune -f >/dev/null || log "warning: docker prune failed"; }

    echo "$HAVE_DOCKER" >"$RES/have-docker"
    echo "$CGROUP_NOTE" >"$RES/cgroup-note"
    printf '%s\n' "${ps_keys[@]}" >"$RES/ps-keys"
    for e in "${!CMD[@]}"; do printf '%s\t%s\n' "$e" "${CMD[$e]}"; done | sort >"$RES/commands.tsv"
    if ((HAVE_DOCKER)); then
        "${DOCKER[@]}" version --format '{{.Server.Version}}' >"$RES/docker-version" 2>/dev/null || echo unknown >"$RES/docker-version"
    fi
}

# --- on the host ----------------------------------------------------------------

WORK_HOST='' NS='' INNER_PID=''
outer_cleanup() {
    local rc=$?
    trap '' INT TERM
    if [[ -n $INNER_PID ]] && kill -0 "$INNER_PID" 2>/dev/null; then
        kill -TERM "$INNER_PID" 2>/dev/null || true
        wait "$INNER_PID" 2>/dev/null || true
    fi
    # Anything still in the private namespace (the inner cleanup was killed).
    if [[ -n $NS ]]; then
        local left=()
        mapfile -t left < <(pids_in_ns "$NS")
        if ((${#left[@]})); then
            mapfile -t left < <(descendants "${left[@]}")
            log "killing processes left in the bench's namespace: ${left[*]}"
            kill -KILL "${left[@]}" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if [[ -f $WORK_HOST/memcg ]]; then
        rmdir "$(<"$WORK_HOST/memcg")" 2>/dev/null || log "warning: could not remove $(<"$WORK_HOST/memcg")"
    fi
    # Cgroup parents this run created (empty once every container is gone).
    local c p
    for c in /sys/fs/cgroup/*/; do
        for p in "${CGROUP_PARENTS[@]}"; do
            [[ -d $c$p ]] || continue
            grep -qxF "$c$p" "$WORK_HOST/cgroups-before" 2>/dev/null && continue
            find "$c$p" -depth -type d -exec rmdir {} + 2>/dev/null \
                || log "warning: could not remove cgroup $c$p"
        done
    done
    if [[ ${WHARF_BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$BASE"/engine-wharf "$BASE"/engine-podman "$BASE"/engine-docker 2>/dev/null \
            || log "warning: could not remove $BASE/engine-*"
    fi
    [[ -z $WORK_HOST ]] || rm -rf "$WORK_HOST"
    exit "$rc"
}

row() { # label wharf podman docker runtime crun
    local label=$1 w=$2 p=$3 d=$4 r=${5:--} c=${6:--}
    local wp=- wd=- wr=-
    [[ $w == - || $p == - ]] || wp=$(awk -v a="$w" -v b="$p" 'BEGIN { printf "%.3f", a / b }')
    [[ $w == - || $d == - ]] || wd=$(awk -v a="$w" -v b="$d" 'BEGIN { printf "%.3f", a / b }')
    [[ $w == - || $r == - ]] || wr=$(awk -v a="$w" -v b="$r" 'BEGIN { printf "%+.2f", a - b }')
    fmt() { if [[ $1 == - ]]; then echo -; else printf '%.2f' "$1"; fi; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(fmt "$w")" "$(fmt "$p")" \
        "$(fmt "$d")" "$(fmt "$r")" "$(fmt "$c")" "$wp" "$wd" "$wr"
}

join_comma() { local out=$1; shift; for x in "$@"; do out+=", $x"; done; printf '%s\n' "$out"; }

met() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "met" : "**not met**") }'; }

# mean_col FILE COLUMN: mean of a column of a monitors TSV (header skipped).
mean_col() {
    awk -F'\t' -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next }
        { s += $k; n++ } END { printf "%.0f", s / n }' "$1"
}

main() {
    local invocation
    invocation="bench/engine-run.sh${*:+ $*}"
    N=30 PS_COUNT=500 PS_ENGINES="wharf podman docker" MONITORS=20 WANT_DOCKER=1
    local prefix=$BASE/prefix
    while (($#)); do
        case $1 in
            -n) N=$2; shift 2 ;;
            --ps-count) PS_COUNT=$2; shift 2 ;;
            --ps-engines) PS_ENGINES=$2; shift 2 ;;
            --monitors) MONITORS=$2; shift 2 ;;
            --prefix) prefix=$2; shift 2 ;;
            --no-docker) WANT_DOCKER=0; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    if ! [[ $N =~ ^[0-9]+$ ]] || ((N < 20)); then die "-n wants at least 20 runs, got '$N'"; fi
    [[ $PS_COUNT =~ ^[1-9][0-9]*$ && $MONITORS =~ ^[1-9][0-9]*$ ]] || die "bad --ps-count or --monitors"
    require_root
    require_cmd jq hyperfine podman runc crun unshare mountpoint tar ps
    ensure_gnu_time
    WHARF=$prefix/bin/wharf
    WHARF_RUNC=$prefix/bin/wharf-runc
    [[ -x $WHARF && -x $WHARF_RUNC ]] \
        || die "no $WHARF / $WHARF_RUNC: CARGO_TARGET_DIR=$BASE/target scripts/install.sh $prefix"
    is_static "$WHARF" || log "warning: $WHARF is not static"
    DOCKER_WHY=
    if ((WANT_DOCKER)); then
        if ! command -v dockerd >/dev/null 2>&1; then
            DOCKER_WHY="dockerd is not installed (apt-get install docker.io)"
            WANT_DOCKER=0
        elif [[ ! -x /usr/bin/docker ]]; then
            DOCKER_WHY="/usr/bin/docker (the client matching dockerd) is missing"
            WANT_DOCKER=0
        fi
    else
        DOCKER_WHY="left out (--no-docker)"
    fi
    [[ -z $DOCKER_WHY ]] || log "docker: $DOCKER_WHY"

    # A previous run killed hard may have left its state dirs.
    rm -rf "$BASE"/engine-wharf "$BASE"/engine-podman "$BASE"/engine-docker
    mkdir -p "$BASE/results"
    local stamp
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    RES=$BASE/results/engine-run-$stamp
    mkdir -p "$RES"
    WORK_HOST=$(mktemp -d "$BASE/engine-run.XXXXXX")
    trap outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local c p
    for c in /sys/fs/cgroup/*/; do
        for p in "${CGROUP_PARENTS[@]}"; do [[ ! -d $c$p ]] || echo "$c$p"; done
    done >"$WORK_HOST/cgroups-before"
    MEMCG=
    for c in /sys/fs/cgroup/memory /sys/fs/cgroup; do
        if [[ -f $c/memory.usage_in_bytes || -f $c/cgroup.controllers ]]; then
            MEMCG=$c/wharf-bench-engine-$$
            mkdir "$MEMCG" 2>/dev/null && echo "$MEMCG" >"$WORK_HOST/memcg" || MEMCG=
            break
        fi
    done
    {
        declare -p N PS_COUNT PS_ENGINES MONITORS WANT_DOCKER WHARF WHARF_RUNC RES DOCKER_WHY MEMCG \
            | sed 's/^declare -[a-z-]* /declare -g /'
    } >"$WORK_HOST/conf.sh"

    # Every engine's binaries start from the same page-cache state: evicted,
    # then read back by their own runs (a freshly written binary sits in large
    # folios that map whole and inflate the resident set; see runtime-run.sh).
    local bin
    for bin in "$WHARF" "$WHARF_RUNC" crun runc podman conmon dockerd containerd \
        containerd-shim-runc-v2 /usr/bin/docker; do
        bin=$(command -v "$bin" 2>/dev/null) || continue
        dd if="$bin" iflag=nocache count=0 status=none 2>/dev/null \
            || log "warning: could not evict $bin from the page cache"
    done

    local load_start load_end t_start t_end
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    t_start=$(date -u '+%Y-%m-%d %H:%M UTC')
    unshare --mount --propagation private -- "$BASH" "$SELF" __inner "$WORK_HOST" &
    INNER_PID=$!
    sleep 0.2
    NS=$(readlink "/proc/$INNER_PID/ns/mnt" 2>/dev/null || true)
    [[ $NS != "$(readlink /proc/$$/ns/mnt)" ]] || NS=
    wait "$INNER_PID" || die "the benchmark failed (see above)"
    INNER_PID=
    load_end=$(cut -d' ' -f1-3 /proc/loadavg)
    t_end=$(date -u '+%H:%M UTC')

    # --- report ---------------------------------------------------------------
    local have_docker docker_version=- ps_n
    have_docker=$(<"$RES/have-docker")
    ((have_docker)) && docker_version=$(<"$RES/docker-version")
    ps_n=$(<"$RES/ps-rows-wharf")
    local m_run_w m_run_p m_run_d m_run_r m_run_c m_ex_w m_ex_p m_ex_d m_ps_w m_ps_p m_ps_d
    m_run_w=$(median_ms "$RES/run-run-wharf.json")
    m_run_p=$(median_ms "$RES/run-run-podman.json")
    m_run_d=$(median_ms "$RES/run-run-docker.json")
    m_run_r=$(median_ms "$RES/run-run-wharf-runc.json")
    m_run_c=$(median_ms "$RES/run-run-crun.json")
    m_ex_w=$(median_ms "$RES/exec-exec-wharf.json")
    m_ex_p=$(median_ms "$RES/exec-exec-podman.json")
    m_ex_d=$(median_ms "$RES/exec-exec-docker.json")
    m_ps_w=$(median_ms "$RES/ps-ps-wharf.json")
    m_ps_p=$(median_ms "$RES/ps-ps-podman.json")
    m_ps_d=$(median_ms "$RES/ps-ps-docker.json")
    local cpu os rev
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    os=$(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")
    rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

    {
        echo "## Engine: run, exec, ps, memory"
        echo
        echo "Command: \`$invocation\`"
        echo
        echo "$t_start to $t_end, $os, kernel $(uname -r), ${cpu:-unknown CPU}, $(nproc) cores;" \
            "load average $load_start before, $load_end after."
        echo "$("$WHARF" --version 2>&1 | head -n 1) (\`$WHARF\`, installed $(date -u -r "$WHARF" '+%Y-%m-%d %H:%M UTC'); repo HEAD $rev at run time)," \
            "$(first_line podman --version) with $(first_line runc --version | sed 's/ version//'), $(first_line crun --version)," \
            "docker ${docker_version} (dockerd, containerd $(first_line containerd --version | awk '{ print $3 }'))."
        echo "Image: the busybox-static rootfs of lib.sh's bundle (bin/busybox, applet symlinks, etc/passwd, etc/group), one tar imported into each engine;" \
            "runtime-only rows run the same rootfs as an OCI bundle (\`runc spec\`, read-only root, no cgroups)."
        echo "Cgroups: $(<"$RES/cgroup-note"). hyperfine -N, $WARMUP_RUNS warm-ups, N=$N runs in 3 blocks alternating between engines (each round starting with the next engine; \`sync\` and 60 s of quiet before the run section, 1 s before the others); medians in ms."
        echo "Raw data: \`$RES\`."
        [[ -z $DOCKER_WHY ]] || echo "docker: not measured: $DOCKER_WHY."
        echo
        echo "| median ms | wharf | podman | docker | wharf-runc run (runtime only) | crun run | wharf/podman | wharf/docker | wharf − runtime-only |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        row "\`run --rm --network none IMAGE /bin/true\`" "$m_run_w" "$m_run_p" "$m_run_d" "$m_run_r" "$m_run_c"
        row "\`exec C /bin/true\` (C runs \`sleep 1000\`)" "$m_ex_w" "$m_ex_p" "$m_ex_d"
        row "\`ps -a\`, $PS_COUNT created containers ($ps_n rows)" "$m_ps_w" "$m_ps_p" "$m_ps_d"
        echo
        local e create=()
        for e in wharf podman docker; do
            [[ -f $RES/create-$e.ms ]] && create+=("$e $(<"$RES/create-$e.ms") ms")
        done
        if ((${#create[@]})); then echo "Creating the containers for \`ps\` took, per \`create\`: $(join_comma "${create[@]}")."; fi
        echo
        echo "Client peak RSS (GNU time \`%M\`, max of $RSS_RUNS runs; the client process alone for every engine, none of them reaps its monitor):"
        local rr=()
        for e in wharf podman docker; do
            [[ -f $RES/rss-run-$e ]] && rr+=("$e \`run --rm\` $(awk -v k="$(<"$RES/rss-run-$e")" 'BEGIN { printf "%.1f", k / 1024 }') MiB")
        done
        rr+=("wharf \`ps -a\` ($ps_n containers) $(awk -v k="$(<"$RES/rss-ps-wharf")" 'BEGIN { printf "%.1f", k / 1024 }') MiB")
        echo "$(join_comma "${rr[@]}")."
        echo
        echo "Per-container monitor, mean over $MONITORS running \`sleep 1000\` containers, KiB. MemAvailable is a host-wide cross-check," \
            "per container, as the drop when the $MONITORS start / the rise when they are removed: it includes the container's own process," \
            "its mounts, namespaces and cgroups, and whatever else the machine did meanwhile. \"bench memcg\" is the same for the memory cgroup" \
            "the whole benchmark runs in (\`memory.usage_in_bytes\`: the engine's processes, the page cache and kernel memory they are" \
            "charged for; not the containers, which sit in cgroups of their own; for docker it includes dockerd's and containerd's growth)."
        echo
        echo "| monitor | VmRSS | RssAnon | RssFile | Pss | Private_Clean | Private_Dirty | MemAvailable per container (start / remove) | bench memcg per container (start / remove) |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        local label f before after removed cb ca cr
        for e in wharf podman docker; do
            f=$RES/monitors-$e.tsv
            [[ -f $f ]] || continue
            case $e in
                wharf) label="wharf \`__monitor\`" ;;
                podman) label="podman's conmon" ;;
                docker) label="docker's containerd-shim-runc-v2" ;;
            esac
            read -r before after removed <"$RES/memavail-$e"
            read -r cb ca cr <"$RES/memcg-$e"
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
                "$(mean_col "$f" VmRSS)" "$(mean_col "$f" RssAnon)" "$(mean_col "$f" RssFile)" \
                "$(mean_col "$f" Pss)" "$(mean_col "$f" Private_Clean)" "$(mean_col "$f" Private_Dirty)" \
                "$(awk -v a="$before" -v b="$after" -v c="$removed" -v n="$MONITORS" 'BEGIN { printf "%.0f / %.0f", (a - b) / n, (c - b) / n }')" \
                "$(if ((cb)); then awk -v a="$cb" -v b="$ca" -v c="$cr" -v n="$MONITORS" 'BEGIN { printf "%.0f / %.0f", (b - a) / n, (b - c) / n }'; else echo -; fi)"
        done
        echo
        local rss_w rss_run rss_ps
        rss_w=$(mean_col "$RES/monitors-wharf.tsv" VmRSS)
        rss_run=$(awk -v k="$(<"$RES/rss-run-wharf")" 'BEGIN { print k / 1024 }')
        rss_ps=$(awk -v k="$(<"$RES/rss-ps-wharf")" 'BEGIN { print k / 1024 }')
        echo "| target | measured | |"
        echo "|---|---:|---|"
        if [[ $m_run_p != - ]]; then
            echo "| \`run --rm\` ≤ 0.15 × podman | $(awk -v a="$m_run_w" -v b="$m_run_p" 'BEGIN { printf "%.3f", a / b }') × | $(met "$(awk -v a="$m_run_w" -v b="$m_run_p" 'BEGIN { print a / b }')" 0.15) |"
        fi
        echo "| \`run --rm\` ≤ runtime-only + 15 ms | $(awk -v a="$m_run_w" -v b="$m_run_r" 'BEGIN { printf "%+.2f", a - b }') ms | $(met "$(awk -v a="$m_run_w" -v b="$m_run_r" 'BEGIN { print a - b }')" 15) |"
        echo "| \`exec\` ≤ 15 ms | $(printf '%.2f' "$m_ex_w") ms | $(met "$m_ex_w" 15) |"
        echo "| \`ps -a\` with $PS_COUNT containers ≤ 50 ms | $(printf '%.2f' "$m_ps_w") ms | $(met "$m_ps_w" 50) |"
        echo "| client peak RSS ≤ 10 MiB (\`run --rm\`, \`ps -a\`) | $(printf '%.1f' "$rss_run"), $(printf '%.1f' "$rss_ps") MiB | $(met "$(awk -v a="$rss_run" -v b="$rss_ps" 'BEGIN { print (a > b ? a : b) }')" 10) |"
        echo "| monitor RSS ≤ 1 MiB per running container (VmRSS) | $(awk -v k="$rss_w" 'BEGIN { printf "%.2f", k / 1024 }') MiB | $(met "$rss_w" 1024) |"
        echo "| monitor Pss ≤ 1 MiB (shared pages split among the $MONITORS) | $(awk -v k="$(mean_col "$RES/monitors-wharf.tsv" Pss)" 'BEGIN { printf "%.2f", k / 1024 }') MiB | $(met "$(mean_col "$RES/monitors-wharf.tsv" Pss)" 1024) |"
    } | tee "$RES/report.md"
}

case ${1:-} in
    __inner) shift; inner_main "$@" ;;
    *) main "$@" ;;
esac
