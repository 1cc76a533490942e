#!/usr/bin/env bash
# bench/network.sh: what bridge networking costs, Wharf side by side with podman
# (netavark) in one run on one machine:
#
#   1. network setup time added to `run`: `run --rm IMAGE /bin/true` on the
#      default bridge network minus the same with `--network none`, for wharf
#      and podman (hyperfine, alternating blocks, medians);
#   2. TCP throughput (iperf3, one stream) container -> host and
#      container -> container over each engine's bridge, against a plain veth
#      pair between two network namespaces made by this script (the
#      reference), and a second such pair given the IPv4 GSO/GRO limits Wharf
#      gives its links (BIG TCP), which shows what the bridge itself costs.
#
# One busybox image for both engines (lib.sh's rootfs, imported), private
# state under /var/tmp/wharf-bench/engine-net-*, a private mount namespace with
# tmpfs over /run and /var/lib/containers (podman writes there whatever its
# --root says; Wharf's address pools under /run/wharf/networks are then the
# bench's own). iperf3 is bind-mounted into the containers with the host's
# libraries (/usr/lib/x86_64-linux-gnu, /lib64).
#
# Markdown report on stdout, progress on stderr, raw hyperfine and iperf3 JSON
# in /var/tmp/wharf-bench/results/network-<UTC time>/.
#
# Usage: bench/network.sh [-n N] [--seconds S] [--repeat R] [--prefix DIR]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

BENCH_NAME="network"
SELF=$(readlink -f "${BASH_SOURCE[0]}")
BENCH_DIR=$(dirname "$SELF")
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

BASE=/var/tmp/wharf-bench
RUNS=${RUNS:-40}
SECONDS_PER=${SECONDS_PER:-5}
REPEAT=${REPEAT:-5}
PREFIX=$BASE/prefix
NET=benchnet
SUBNET=10.254.77.0/24
VETH_A=10.254.78.1 VETH_B=10.254.78.2
BIG_A=10.254.78.5 BIG_B=10.254.78.6
# Wharf's IPv4 GSO/GRO limit on its links (wharf_net::link::BIG_TCP_MAX_SIZE).
BIG_TCP=$((8 * 65535))

usage() {
    cat <<EOF
Usage: bench/network.sh [options]

  -n N           timed runs per run-latency command (default $RUNS, in 4 blocks
                 alternating between the commands; at least 20)
  --seconds S    length of one iperf3 measurement (default $SECONDS_PER)
  --repeat R     rounds of iperf3 measurements, each taking every path in
                 turn; the median per path is reported (default $REPEAT)
  --prefix DIR   where scripts/install.sh put bin/wharf (default $PREFIX)
  -h, --help     this text

Needs root, hyperfine, jq, iperf3, podman (netavark), busybox-static,
iproute2, nftables, python3.
EOF
}

while (($#)) && [[ $1 != __inner ]]; do
    case $1 in
        -n) RUNS=$2; shift 2 ;;
        --seconds) SECONDS_PER=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --prefix) PREFIX=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
((RUNS >= 20)) || die "-n must be at least 20"

ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
gbit() { awk -v b="$1" 'BEGIN { printf "%.2f\n", b / 1e9 }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

# --- inside the private mount namespace -----------------------------------------

WORK='' RES='' WHARF='' WR='' PR=''
PODMAN=()
NS_A='' NS_B='' NS_C='' NS_D=''
IPERF_MOUNTS=(-v /usr/bin/iperf3:/usr/bin/iperf3:ro
    -v /usr/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:ro
    -v /usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro
    -v /lib64:/lib64:ro)

inner_cleanup() {
    local rc=$? ids=()
    trap '' INT TERM
    log "cleaning up"
    if ((${#PODMAN[@]})); then
        "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1 || log "warning: podman rm -af failed"
        "${PODMAN[@]}" network rm -f "$NET" >/dev/null 2>&1 || true
    fi
    if [[ -n $WHARF && -d $WR ]]; then
        mapfile -t ids < <("$WHARF" --root "$WR" ps -aq 2>/dev/null || true)
        ((!${#ids[@]})) || "$WHARF" --root "$WR" rm -f "${ids[@]}" >/dev/null 2>&1 || log "warning: wharf rm -f failed"
        "$WHARF" --root "$WR" network rm "$NET" >/dev/null 2>&1 || true
    fi
    [[ -z $NS_A ]] || ip netns del "$NS_A" 2>/dev/null || true
    [[ -z $NS_B ]] || ip netns del "$NS_B" 2>/dev/null || true
    [[ -z $NS_C ]] || ip netns del "$NS_C" 2>/dev/null || true
    [[ -z $NS_D ]] || ip netns del "$NS_D" 2>/dev/null || true
    pkill -f "iperf3 -s -1 -p 5201 -B" 2>/dev/null || true
    # The default bridges stay, as docker0 does; podman's is torn down by
    # netavark with its last container.
    exit "$rc"
}

# hf KEY RUNS: one hyperfine block of the command in CMD[KEY].
declare -A CMD=()
hf() {
    local key=$1 runs=$2 block=$3
    hyperfine -N --style none --warmup 2 --runs "$runs" --export-json "$RES/$key.$block.json" \
        "${CMD[$key]}" </dev/null >>"$WORK/$key.log" 2>&1 || {
        tail -n 5 "$WORK/$key.log" >&2
        die "$key failed: ${CMD[$key]}"
    }
}

# median_ms KEY: the median over every block's runs of KEY, in ms.
median_ms() {
    jq -r '.results[].times[]' "$RES/$1".*.json | median | { read -r s; ms "$s"; }
}

# iperf_gbit JSON: the receiver's rate of an iperf3 -J run, Gbit/s.
iperf_gbit() { jq -r '.end.sum_received.bits_per_second' "$1" | { read -r b; gbit "$b"; }; }

# host_server ADDR: an iperf3 server on the host for one client, bound to ADDR.
host_server() {
    iperf3 -s -1 -p 5201 -B "$1" >/dev/null 2>&1 &
    for _ in $(seq 50); do
        ss -ltn "sport = :5201" | grep -q 5201 && return 0
        sleep 0.1
    done
    die "iperf3 server on $1 did not start"
}

inner_main() {
    WORK=$1 RES=$2 WHARF=$3
    trap inner_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mount -t tmpfs wharf-bench /run
    mkdir -p /var/lib/containers
    mount -t tmpfs wharf-bench /var/lib/containers
    WR=$BASE/engine-net-wharf
    PR=$BASE/engine-net-podman
    rm -rf "$WR" "$PR"
    mkdir -p "$WR" "$PR"/{root,runroot,tmp,net}

    log "building the busybox image"
    build_busybox_bundle "$WORK/bundle"
    tar -C "$WORK/bundle/rootfs" --numeric-owner --sort=name -cf "$WORK/busybox.tar" .
    "$WHARF" --root "$WR" import "$WORK/busybox.tar" bench/busybox:latest >/dev/null \
        || die "wharf import failed"
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
network_backend = "netavark"
network_config_dir = "$PR/net"
EOF
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/root"\nrunroot = "%s/runroot"\n' "$PR" "$PR" \
        >"$PR/storage.conf"
    export CONTAINERS_CONF=$PR/containers.conf CONTAINERS_STORAGE_CONF=$PR/storage.conf
    PODMAN=(podman --root "$PR/root" --runroot "$PR/runroot" --storage-driver overlay
        --tmpdir "$PR/tmp" --network-config-dir "$PR/net" --cgroup-manager cgroupfs
        --events-backend none --runtime runc)
    "${PODMAN[@]}" import -q "$WORK/busybox.tar" localhost/bench/busybox:latest >/dev/null \
        || die "podman import failed"

    # --- 1. setup time added to run --------------------------------------------
    local W="$WHARF --root $WR" P="${PODMAN[*]}"
    CMD[wharf-none]="$W run --rm --network none bench/busybox /bin/true"
    CMD[wharf-bridge]="$W run --rm bench/busybox /bin/true"
    CMD[podman-none]="$P run --rm --network none localhost/bench/busybox /bin/true"
    CMD[podman-bridge]="$P run --rm localhost/bench/busybox /bin/true"
    # The default networks exist before timing (first use makes them).
    $W run --rm bench/busybox /bin/true
    $P run --rm localhost/bench/busybox /bin/true
    local block key keys=(wharf-none wharf-bridge podman-none podman-bridge)
    for block in 1 2 3 4; do
        for key in "${keys[@]}"; do
            log "run latency: $key, block $block of 4"
            hf "$key" $((RUNS / 4)) "$block"
        done
    done
    declare -A MED=()
    for key in "${keys[@]}"; do MED[$key]=$(median_ms "$key"); done

    # --- 2. throughput -----------------------------------------------------------
    log "throughput: setting up the veth pair, wharf's and podman's networks"
    NS_A=wharfbench-a NS_B=wharfbench-b NS_C=wharfbench-c NS_D=wharfbench-d
    veth_pair() { # NS1 NS2 ADDR1 ADDR2 [GSO]
        ip netns add "$1"
        ip netns add "$2"
        ip -n "$1" link add veth0 type veth peer name veth0 netns "$2"
        if (($# > 4)); then
            ip netns exec "$1" python3 "$BENCH_DIR/link-gso.py" veth0 "$5"
            ip netns exec "$2" python3 "$BENCH_DIR/link-gso.py" veth0 "$5"
        fi
        ip -n "$1" addr add "$3/30" dev veth0
        ip -n "$2" addr add "$4/30" dev veth0
        ip -n "$1" link set veth0 up
        ip -n "$2" link set veth0 up
        ip -n "$1" link set lo up
        ip -n "$2" link set lo up
    }
    veth_pair "$NS_A" "$NS_B" "$VETH_A" "$VETH_B"
    veth_pair "$NS_C" "$NS_D" "$BIG_A" "$BIG_B" "$BIG_TCP"
    veth_client() {
        ip netns exec "$NS_B" iperf3 -s -1 -p 5201 -B "$VETH_B" >/dev/null 2>&1 &
        sleep 0.3
        ip netns exec "$NS_A" iperf3 -c "$VETH_B" -p 5201 -t "$SECONDS_PER" -J
    }
    big_veth_client() {
        ip netns exec "$NS_D" iperf3 -s -1 -p 5201 -B "$BIG_B" >/dev/null 2>&1 &
        sleep 0.3
        ip netns exec "$NS_C" iperf3 -c "$BIG_B" -p 5201 -t "$SECONDS_PER" -J
    }

    $W network create --subnet "$SUBNET" "$NET" >/dev/null
    local gw=${SUBNET%.0/24}.1 wharf_server podman_server
    $W run -d --name iperf-server --network "$NET" "${IPERF_MOUNTS[@]}" bench/busybox \
        iperf3 -s -p 5201 >/dev/null
    wharf_server=$($W inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" iperf-server)
    wharf_to_host() {
        host_server "$gw"
        $W run --rm --network "$NET" "${IPERF_MOUNTS[@]}" bench/busybox \
            iperf3 -c "$gw" -p 5201 -t "$SECONDS_PER" -J
    }
    wharf_to_ctr() {
        $W run --rm --network "$NET" "${IPERF_MOUNTS[@]}" bench/busybox \
            iperf3 -c "$wharf_server" -p 5201 -t "$SECONDS_PER" -J
    }

    "${PODMAN[@]}" network create --subnet 10.254.79.0/24 "$NET" >/dev/null
    local pgw=10.254.79.1
    # The bridge exists once a container is on it.
    "${PODMAN[@]}" run -d --name iperf-server --network "$NET" "${IPERF_MOUNTS[@]}" \
        localhost/bench/busybox iperf3 -s -p 5201 >/dev/null
    podman_server=$("${PODMAN[@]}" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" iperf-server)
    podman_to_host() {
        host_server "$pgw"
        "${PODMAN[@]}" run --rm --network "$NET" "${IPERF_MOUNTS[@]}" localhost/bench/busybox \
            iperf3 -c "$pgw" -p 5201 -t "$SECONDS_PER" -J
    }
    podman_to_ctr() {
        "${PODMAN[@]}" run --rm --network "$NET" "${IPERF_MOUNTS[@]}" localhost/bench/busybox \
            iperf3 -c "$podman_server" -p 5201 -t "$SECONDS_PER" -J
    }
    sleep 0.5

    # Rounds that take every path in turn, so that the machine's drift
    # weighs on all of them alike; the median of each path's runs.
    declare -A GB=() FN=([veth]=veth_client [veth-big]=big_veth_client [wharf-host]=wharf_to_host
        [wharf-ctr]=wharf_to_ctr [podman-host]=podman_to_host [podman-ctr]=podman_to_ctr)
    local round tag tags=(veth veth-big wharf-host wharf-ctr podman-host podman-ctr)
    for round in $(seq "$REPEAT"); do
        log "throughput: round $round of $REPEAT"
        for tag in "${tags[@]}"; do
            "${FN[$tag]}" >"$RES/iperf.$tag.$round.json" 2>>"$WORK/iperf.$tag.log" \
                || { tail -n 5 "$WORK/iperf.$tag.log" >&2; die "iperf3 $tag failed"; }
        done
    done
    for tag in "${tags[@]}"; do
        GB[$tag]=$(for round in $(seq "$REPEAT"); do iperf_gbit "$RES/iperf.$tag.$round.json"; done | median)
    done

    # --- report -----------------------------------------------------------------
    local wd pd
    wd=$(awk -v a="${MED[wharf-bridge]}" -v b="${MED[wharf-none]}" 'BEGIN { printf "%.2f", a - b }')
    pd=$(awk -v a="${MED[podman-bridge]}" -v b="${MED[podman-none]}" 'BEGIN { printf "%.2f", a - b }')
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
    cat <<EOF
## Networking: setup time and throughput

\`bench/network.sh -n $RUNS --seconds $SECONDS_PER --repeat $REPEAT\` on $(uname -r), $(nproc) CPUs,
$(date -u +%Y-%m-%dT%H:%MZ); $(first_line "$WHARF" --version), $(first_line podman --version) (netavark, runc),
$(first_line iperf3 --version).

### Setup time added to \`run --rm IMAGE /bin/true\`

| engine | --network none (ms, median) | default bridge (ms, median) | added by the network |
|---|---:|---:|---:|
| wharf | ${MED[wharf-none]} | ${MED[wharf-bridge]} | **$wd ms** |
| podman | ${MED[podman-none]} | ${MED[podman-bridge]} | $pd ms |

### TCP throughput, one iperf3 stream of ${SECONDS_PER} s (median of $REPEAT rounds taking each path in turn)

| path | Gbit/s | vs the plain veth pair |
|---|---:|---:|
| plain veth pair between two namespaces | ${GB[veth]} | 1.000 |
| the same, with Wharf's IPv4 GSO/GRO limit ($BIG_TCP bytes) | ${GB[veth-big]} | $(ratio "${GB[veth-big]}" "${GB[veth]}") |
| wharf: container -> host (bridge gateway) | ${GB[wharf-host]} | $(ratio "${GB[wharf-host]}" "${GB[veth]}") |
| wharf: container -> container (same bridge) | ${GB[wharf-ctr]} | $(ratio "${GB[wharf-ctr]}" "${GB[veth]}") |
| podman: container -> host (bridge gateway) | ${GB[podman-host]} | $(ratio "${GB[podman-host]}" "${GB[veth]}") |
| podman: container -> container (same bridge) | ${GB[podman-ctr]} | $(ratio "${GB[podman-ctr]}" "${GB[veth]}") |

Raw data: $RES
EOF
}

# --- main ----------------------------------------------------------------------

if [[ ${1:-} == __inner ]]; then
    shift
    inner_main "$@"
    exit
fi

require_root
require_cmd hyperfine jq iperf3 podman ip nft ss unshare python3
WHARF=$PREFIX/bin/wharf
[[ -x $WHARF ]] || die "no wharf at $WHARF: run CARGO_TARGET_DIR=$BASE/target scripts/install.sh $PREFIX"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$BASE/results/network-$STAMP
mkdir -p "$RES"
WORK=$(mktemp -d "$BASE/network.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RUNS=$RUNS SECONDS_PER=$SECONDS_PER REPEAT=$REPEAT \
    unshare -m --propagation private "$SELF" __inner "$WORK" "$RES" "$WHARF"
