# shellcheck shell=bash
# Helpers shared by the bench/ scripts. Source it; it defines functions only.
#
# Every function here either succeeds or calls `die`; callers run under
# `set -euo pipefail`.

# Messages go to stderr so that stdout carries only the report.
log() {
    printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (runtimes need CAP_SYS_ADMIN)"
}

# require_cmd CMD...: every CMD must be on PATH.
require_cmd() {
    local cmd
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || die "missing command: $cmd"
    done
}

# ensure_gnu_time: GNU time (Debian package `time`) reports the peak RSS of a
# command with `-f %M`; bash's `time` keyword cannot. Installs it when absent.
ensure_gnu_time() {
    [[ -x /usr/bin/time ]] && return 0
    log "/usr/bin/time (GNU time) is missing; installing Debian package 'time'"
    require_root
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >&2 \
        || die "apt-get install time failed; install GNU time by hand"
    [[ -x /usr/bin/time ]] || die "/usr/bin/time still missing after apt-get install time"
}

# is_static ELF: true when ELF has no program interpreter.
is_static() {
    local out
    # ldd exits 1 for a static binary; keep its message, not its status.
    out=$(LC_ALL=C ldd "$1" 2>&1 || true)
    [[ $out == *"not a dynamic executable"* || $out == *"statically linked"* ]]
}

# build_busybox_bundle BUNDLE_DIR [BUSYBOX]: writes an OCI bundle that runs
# /bin/true in a read-only busybox rootfs, with no cgroup settings at all, so
# that every runtime does the same work.
#
# rootfs: bin/busybox (a copy of the static binary), a symlink per applet at the
# path `busybox --list-full` gives and in bin/, etc/passwd, etc/group, and empty
# proc sys dev tmp. config.json: `runc spec` (or `crun spec`), then
# process.args ["/bin/true"], terminal false, root.readonly true, and
# linux.resources, linux.cgroupsPath and the /sys/fs/cgroup mount removed.
build_busybox_bundle() {
    local bundle=$1 busybox=${2:-/bin/busybox}
    local rootfs=$bundle/rootfs applet path

    [[ -x $busybox ]] || die "busybox not found at $busybox (apt-get install busybox-static)"
    is_static "$busybox" || die "$busybox is not static (apt-get install busybox-static)"

    mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
    cp "$busybox" "$rootfs/bin/busybox"
    chmod 0755 "$rootfs/bin/busybox"
    chmod 1777 "$rootfs/tmp"

    # Paths from --list-full are relative (usr/bin/env, sbin/ip, linuxrc).
    while IFS= read -r path; do
        [[ -n $path && $path != bin/busybox ]] || continue
        mkdir -p "$rootfs/$(dirname "$path")"
        ln -sfn /bin/busybox "$rootfs/$path"
    done < <("$rootfs/bin/busybox" --list-full)
    while IFS= read -r applet; do
        [[ -n $applet && $applet != busybox && ! -e $rootfs/bin/$applet ]] || continue
        ln -sfn busybox "$rootfs/bin/$applet"
    done < <("$rootfs/bin/busybox" --list)
    [[ -L $rootfs/bin/true ]] || die "busybox at $busybox has no 'true' applet"

    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
        >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

    local spec_tool
    if command -v runc >/dev/null 2>&1; then
        spec_tool=runc
    elif command -v crun >/dev/null 2>&1; then
        spec_tool=crun
    else
        die "need runc or crun to write the default config.json"
    fi
    (cd "$bundle" && "$spec_tool" spec) || die "$spec_tool spec failed in $bundle"

    jq '
        .process.args = ["/bin/true"]
        | .process.terminal = false
        | .root.path = "rootfs"
        | .root.readonly = true
        | del(.linux.resources)
        | del(.linux.cgroupsPath)
        | .mounts |= map(select(.type != "cgroup" and .type != "cgroup2"
                                and .destination != "/sys/fs/cgroup"))
    ' "$bundle/config.json" >"$bundle/config.json.new" \
        || die "jq could not rewrite $bundle/config.json"
    mv "$bundle/config.json.new" "$bundle/config.json"
}

# timing_stats_ms HYPERFINE_JSON: prints "median mean min p90 n" in
# milliseconds over every run of every benchmark in the file. The median of an
# even count is the mean of the middle two; p90 is the nearest-rank percentile
# (the ceil(0.9 n)-th smallest).
timing_stats_ms() {
    jq -r '
        [.results[].times[]] | sort | length as $n
        | if $n == 0 then error("no timed runs") else . end
        | (if $n % 2 == 1 then .[($n - 1) / 2]
           else (.[$n / 2 - 1] + .[$n / 2]) / 2 end) as $median
        | (add / $n) as $mean
        | .[0] as $min
        | .[((9 * $n + 9) / 10 | floor) - 1] as $p90
        | [$median, $mean, $min, $p90 | . * 1000] + [$n]
        | @tsv
    ' "$1"
}

# strace_total_calls FILE: the call count on the "total" line of `strace -c`.
strace_total_calls() {
    awk '$NF == "total" { print $4; found = 1 } END { exit !found }' "$1"
}

# first_line CMD...: the first line of CMD's output, or "unknown".
first_line() {
    local out
    out=$("$@" 2>&1) || true
    out=${out%%$'\n'*}
    printf '%s\n' "${out:-unknown}"
}
