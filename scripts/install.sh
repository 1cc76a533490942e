#!/usr/bin/env bash
# Builds Wharf in release mode and installs it:
#   $PREFIX/bin/wharf        the binary
#   $PREFIX/bin/wharf-runc   a link to it: the runc-compatible runtime
# Usage: scripts/install.sh [PREFIX]   (default /usr/local)
set -euo pipefail
prefix=${1:-/usr/local}
cd "$(dirname "$0")/.."
cargo build --release --locked --bin wharf
install -d "$prefix/bin"
install -m 0755 target/release/wharf "$prefix/bin/wharf.new"
mv -f "$prefix/bin/wharf.new" "$prefix/bin/wharf"
ln -sfn wharf "$prefix/bin/wharf-runc"
echo "installed $prefix/bin/wharf and $prefix/bin/wharf-runc"
