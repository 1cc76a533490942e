#!/usr/bin/env bash
# Builds Wharf in release mode and installs it:
#   $PREFIX/bin/wharf        the binary
#   $PREFIX/bin/wharf-init   the init for `run --init` (static: runs in any image)
#   $PREFIX/bin/wharf-monitor the per-container monitor alone (one runs per
#                            running container: built lean, as wharf-runc)
#   $PREFIX/bin/wharf-runc   the runc-compatible runtime alone (the same code as
#                            `wharf runtime`, built lean: it runs per container)
# Usage: scripts/install.sh [PREFIX]   (default /usr/local)
set -euo pipefail
prefix=${1:-/usr/local}
cd "$(dirname "$0")/.."
# The installed binary is linked statically and non-PIE: no dynamic loader,
# no relocation pass, so every container start maps and dirties fewer pages
# (see BENCHMARKS.md). An explicit --target keeps proc-macros buildable.
# libseccomp is linked from its static archive (libseccomp-dev) for the same
# reason: a static binary must not pull in a shared library.
host=$(rustc -vV | sed -n 's/^host: //p')
LIBSECCOMP_LINK_TYPE=static \
LIBSECCOMP_LIB_PATH=$(pkg-config --variable=libdir libseccomp) \
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked --bin wharf --bin wharf-runc --bin wharf-init --bin wharf-monitor --target "$host"
install -d "$prefix/bin"
for bin in wharf wharf-runc wharf-init wharf-monitor; do
    # Beside the target, then renamed: replaces an older install (or the
    # link earlier versions made) atomically.
    install -m 0755 "${CARGO_TARGET_DIR:-target}/$host/release/$bin" "$prefix/bin/$bin.new"
    mv -f "$prefix/bin/$bin.new" "$prefix/bin/$bin"
done
echo "installed $prefix/bin/wharf, wharf-runc, wharf-init and wharf-monitor"
