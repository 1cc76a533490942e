#!/usr/bin/env bash
# Micro-benchmark: compile, cache hit and install of the default seccomp
# profile (crates/wharf-runtime/benches/seccomp.rs). Prints a Markdown table.
# Usage: bench/seccomp-compile.sh [N]   (default 100 runs per step)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
echo "host: $(uname -r), $(nproc) cpus, $(date -u +%Y-%m-%dT%H:%MZ)" >&2
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(pkg-config --variable=libdir libseccomp) \
    cargo bench --quiet -p wharf-runtime --bench seccomp -- "$n"
