#!/usr/bin/env bash
# Fails if tests left anything behind: mounts, processes, state dirs or
# network namespaces carrying the test prefix (wt<pid>x<n>, wharf-test-).
set -euo pipefail
leaks=$( {
    grep -E 'wharf-test-|wt[0-9]+x[0-9]+' /proc/self/mountinfo || true
    ps -eo pid,args | grep -E 'wharf-test-|wt[0-9]+x[0-9]+' | grep -v -E 'grep|leak-sweep' || true
    ip netns list 2>/dev/null | grep -E 'wt[0-9]+x' || true
    ls -d /var/tmp/wharf-test-* /var/tmp/wharf-sentinel-* 2>/dev/null || true
} )
if [ -n "$leaks" ]; then
    echo "leak sweep: tests left these behind:" >&2
    echo "$leaks" >&2
    exit 1
fi
echo "leak sweep: clean"
