#!/usr/bin/env bash
# Fails if tests left anything behind: mounts, processes, state dirs or
# network namespaces carrying the test prefix (wt<pid>x<n>, wharf-test-),
# and container networking: veths (wh + 13 hex), user-network bridges
# (wh-<id12>), per-container nft chains (c-<id12>) and address allocations,
# and cgroups: the runtime tests' (wt<pid>x<n>) and the engine's containers'
# (wharf/<id64>; on a machine that runs Wharf containers besides the tests,
# those are listed too).
# The default network's bridge wharf0 and Wharf's nft table may stay, as
# docker0 does.
set -euo pipefail
leaks=$( {
    grep -E 'wharf-test-|wt[0-9]+x[0-9]+' /proc/self/mountinfo || true
    ps -eo pid,args | grep -E 'wharf-test-|wt[0-9]+x[0-9]+' | grep -v -E 'grep|leak-sweep' || true
    ip netns list 2>/dev/null | grep -E 'wt[0-9]+x' || true
    ls -d /var/tmp/wharf-test-* /var/tmp/wharf-sentinel-* 2>/dev/null || true
    ip -o link show 2>/dev/null | grep -oE ': wh(-[0-9a-f]{12}|[0-9a-f]{13})[@:]' || true
    nft list table inet wharf 2>/dev/null | grep -E 'chain c-[0-9a-f]{12}' || true
    grep -l '"owner"' /run/wharf/networks/*/ipam.json 2>/dev/null || true
    find /sys/fs/cgroup -mindepth 2 -type d -regextype posix-extended \
        \( -regex '.*/wharf/[0-9a-f]{64}' -o -regex '.*/wt[0-9]+x[0-9]+[^/]*' \) 2>/dev/null || true
} )
if [ -n "$leaks" ]; then
    echo "leak sweep: tests left these behind:" >&2
    echo "$leaks" >&2
    exit 1
fi
echo "leak sweep: clean"
