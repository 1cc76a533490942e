#!/usr/bin/env bash
# Installs the Debian packages Wharf's build, quick start and tests need.
# Only Debian's package archive is used (no other network access).
set -euo pipefail
# nftables: the bridge networks' firewall (Wharf drives `nft -j`).
pkgs=(busybox-static uidmap strace gcc pkg-config procps iproute2 libseccomp-dev nftables)
if [ "${1:-}" = "--test" ]; then
    # References used side by side in tests and benchmarks (never by Wharf).
    pkgs+=(runc crun containerd hyperfine time jq)
    # Registry tests: a real registry, certificates and bcrypt htpasswd for it,
    # skopeo/umoci/podman to seed and read images back.
    pkgs+=(docker-registry openssl apache2-utils skopeo umoci podman debootstrap)
    # The engine's terminal test drives `run -it` in a real terminal.
    pkgs+=(tmux)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "cargo is required (a Rust toolchain >= 1.85)" >&2
    exit 1
fi
