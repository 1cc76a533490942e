#!/usr/bin/env bash
# Pull + unpack of a multi-layer Debian minbase image from a local registry:
# wharf vs `skopeo copy … containers-storage:` vs `podman pull`, and the floor
# `curl | gunzip | tar` (zstd -d for the zstd variant) of the same layers one
# after another. Page cache dropped before every run; runs alternate between
# tools. Prints a Markdown report on stdout, progress on stderr.
#
# Usage: sudo bench/image-pull.sh [-n RUNS] [--layers K] [--wharf PATH] [--tools "wharf skopeo podman floor"]
# Env:   WHARF_BENCH_ROOTFS=DIR  use this rootfs instead of debootstrap --variant=minbase
#        WHARF_BENCH_KEEP=1      keep the work dir
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
layers=4
wharf=target/release/wharf
tools="wharf skopeo podman floor"
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	--layers) layers=$2; shift 2 ;;
	--wharf) wharf=$2; shift 2 ;;
	--tools) tools=$2; shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for t in docker-registry skopeo podman curl zstd jq /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "needs $t (scripts/deps.sh --test)" >&2; exit 1; }
done
[ -x "$wharf" ] || { echo "no wharf at $wharf: cargo build --release --bin wharf" >&2; exit 1; }
wharf=$(realpath "$wharf")

# podman and skopeo write host state even with --root (/var/lib/containers/
# cache, /run/libpod, /run/containers): run them in a private mount namespace
# with tmpfs over those paths.
isolated=(unshare --mount --propagation private -- sh -c 'mount -t tmpfs wharf-bench /run &&
	if [ -d /var/lib/containers ]; then mount -t tmpfs wharf-bench /var/lib/containers;
	else mount -t tmpfs wharf-bench /var/lib; fi && exec "$@"' sh)

cache=/var/tmp/wharf-bench
mkdir -p "$cache"
rootfs=${WHARF_BENCH_ROOTFS:-$cache/minbase}
if [ ! -d "$rootfs/usr" ]; then
	echo "debootstrap --variant=minbase bookworm $rootfs (once)" >&2
	debootstrap --variant=minbase bookworm "$rootfs.tmp" >&2
	mv "$rootfs.tmp" "$rootfs"
fi

work=$(mktemp -d /var/tmp/wharf-bench/run.XXXXXX)
registry_pid=
cleanup() {
	if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
	unmount_under "$work"
	[ -n "${WHARF_BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# --- the image: K layers cut from the rootfs, gzip and zstd variants -------
# Built and pushed once into a registry storage cached under $cache/image-K
# (delete it to rebuild); each run serves that storage from a fresh registry.
img=$cache/image-$layers
build_image() {
	rm -rf "$img"; mkdir -p "$img/tars"
	local layout=$img/layout
	mkdir -p "$layout/blobs/sha256"
	echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
	# Layer cut: the largest trees each get a layer, the rest goes last.
	local cuts=(usr/lib usr/share usr/bin) excludes=() i=0 c t comp
	cuts=("${cuts[@]:0:$((layers - 1))}")
	for c in "${cuts[@]}"; do
		tar -C "$rootfs" --numeric-owner --sort=name -cf "$img/tars/$i.tar" "$c"
		excludes+=(--exclude="./$c")
		i=$((i + 1))
	done
	tar -C "$rootfs" --numeric-owner --sort=name "${excludes[@]}" -cf "$img/tars/$i.tar" .
	blob() { # file media-type -> descriptor JSON, blob stored
		local d s
		d=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1")
		cp "$1" "$layout/blobs/sha256/$d"
		printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
	}
	local diff_ids config=$img/config.json index_entries=() descs cdesc m
	diff_ids=$(for t in "$img"/tars/*.tar; do echo "\"sha256:$(sha256sum "$t" | cut -d' ' -f1)\""; done | paste -sd,)
	printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diff_ids" > "$config"
	for comp in gzip zstd; do
		descs=()
		for t in "$img"/tars/*.tar; do
			if [ $comp = gzip ]; then gzip -6 -n -c "$t" > "$t.gz"; descs+=("$(blob "$t.gz" application/vnd.oci.image.layer.v1.tar+gzip)")
			else zstd -3 -q -c "$t" > "$t.zst"; descs+=("$(blob "$t.zst" application/vnd.oci.image.layer.v1.tar+zstd)"); fi
		done
		cdesc=$(blob "$config" application/vnd.oci.image.config.v1+json)
		printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
			"$cdesc" "$(IFS=,; echo "${descs[*]}")" > "$img/manifest-$comp.json"
		m=$(blob "$img/manifest-$comp.json" application/vnd.oci.image.manifest.v1+json)
		index_entries+=("$(echo "$m" | jq -c --arg t "$comp" '. + {annotations: {"org.opencontainers.image.ref.name": $t}}')")
	done
	printf '{"schemaVersion":2,"manifests":[%s]}' "$(IFS=,; echo "${index_entries[*]}")" > "$layout/index.json"
	{
		echo "unpacked=$(du -scb "$img"/tars/*.tar | tail -1 | cut -f1)"
		echo "compressed_gzip=$(du -cb "$img"/tars/*.gz | tail -1 | cut -f1)"
		echo "compressed_zstd=$(du -cb "$img"/tars/*.zst | tail -1 | cut -f1)"
	} > "$img/sizes"
	rm -rf "$img/tars"
}

# --- the registry --------------------------------------------------------------
start_registry() {
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat > "$work/registry.yml" <<EOF
version: 0.1
storage: {filesystem: {rootdirectory: $img/registry}}
http: {addr: 127.0.0.1:$port}
log: {level: error}
EOF
	docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
	registry_pid=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
}
if [ ! -e "$img/done" ]; then
	echo "building the $layers-layer image and its registry storage (once, in $img)" >&2
	build_image
	start_registry
	for comp in gzip zstd; do
		"${isolated[@]}" skopeo copy -q --dest-tls-verify=false "oci:$img/layout:$comp" "docker://127.0.0.1:$port/bench/minbase:$comp" >&2
	done
	touch "$img/done"
else
	start_registry
fi
# shellcheck disable=SC1091
. "$img/sizes"
ref() { echo "127.0.0.1:$port/bench/minbase:$1"; }

# --- one timed run of a tool: prints "seconds maxrss_kb" -----------------------
unmount_under() { # deepest first; a store may mount over its own directories
	local m
	for m in $(awk -v p="$1/" 'index($5, p)==1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}
fresh() {
	unmount_under "$work/dest"
	rm -rf "$work/dest" 2>/dev/null || { sleep 1; rm -rf "$work/dest"; }
	mkdir -p "$work/dest"; sync; echo 3 > /proc/sys/vm/drop_caches
}
timed() { /usr/bin/time -f '%e %M' -o "$work/time" "$@" > /dev/null 2> "$work/last.err" || { cat "$work/last.err" >&2; return 1; }; cat "$work/time"; }
floor() { # curl each layer blob | decompress | tar -x, one after another
	local comp=$1 dec digest
	[ "$comp" = gzip ] && dec="gzip -dc" || dec="zstd -dc"
	for digest in $(jq -r '.layers[].digest' "$img/manifest-$comp.json"); do
		curl -sf "http://127.0.0.1:$port/v2/bench/minbase/blobs/$digest" | $dec | tar -C "$work/dest" -xf -
	done
}
run_tool() {
	local tool=$1 comp=$2
	fresh
	case $tool in
	wharf) timed "$wharf" --root "$work/dest/wharf" pull -q --tls-verify=false "$(ref "$comp")" ;;
	skopeo) timed "${isolated[@]}" skopeo copy -q --src-tls-verify=false "docker://$(ref "$comp")" \
		"containers-storage:[overlay@$work/dest/root+$work/dest/runroot]$(ref "$comp")" ;;
	podman) timed "${isolated[@]}" podman --root "$work/dest/root" --runroot "$work/dest/runroot" --storage-driver overlay \
		--tmpdir "$work/dest/tmp" --network-config-dir "$work/dest/net" \
		--cgroup-manager cgroupfs --events-backend none pull -q --tls-verify=false "$(ref "$comp")" ;;
	floor) export -f floor; export work port img; timed bash -c "floor $comp" ;;
	esac
	# podman/skopeo leave mounts in their store: clean before the next run
	unmount_under "$work/dest"
}

declare -A wall rss
for comp in gzip zstd; do
	for r in $(seq "$runs"); do
		for tool in $tools; do
			out=$(run_tool "$tool" "$comp") || { echo "$comp run $r $tool: failed (see above)" >&2; continue; }
			read -r s k <<< "$out"
			wall[$tool/$comp]+="$s "
			rss[$tool/$comp]+="$k "
			echo "$comp run $r $tool: ${s}s ${k}KB" >&2
		done
	done
done

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "## Image pull: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
echo
echo "Debian bookworm minbase, $layers layers, $((unpacked / 1000000)) MB unpacked;"
echo "gzip $((compressed_gzip / 1000000)) MB, zstd $((compressed_zstd / 1000000)) MB compressed. Local docker-registry,"
echo "page cache dropped before each run, $runs runs per tool and format, medians."
echo "$("$wharf" --version 2>/dev/null | head -1), $(skopeo --version), $(podman --version)."
echo
echo "Command: \`bench/image-pull.sh -n $runs --layers $layers\`"
echo
echo "| format | tool | wall s | peak RSS MB | vs floor | vs fastest engine |"
echo "|---|---|---:|---:|---:|---:|"
for comp in gzip zstd; do
	fl=
	[ -n "${wall[floor/$comp]:-}" ] && fl=$(echo "${wall[floor/$comp]}" | median)
	best=
	for tool in skopeo podman; do
		[ -n "${wall[$tool/$comp]:-}" ] || continue
		m=$(echo "${wall[$tool/$comp]}" | median)
		if [ -z "$best" ] || awk -v a="$m" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$m; fi
	done
	for tool in $tools; do
		[ -n "${wall[$tool/$comp]:-}" ] || continue
		m=$(echo "${wall[$tool/$comp]}" | median)
		k=$(echo "${rss[$tool/$comp]}" | median)
		vf=$([ -n "$fl" ] && awk -v a="$m" -v b="$fl" 'BEGIN{printf "%.2f", a/b}' || echo -)
		vb=$([ -n "$best" ] && awk -v a="$m" -v b="$best" 'BEGIN{printf "%.2f", a/b}' || echo -)
		printf '| %s | %s | %.2f | %.1f | %s | %s |\n' "$comp" "$tool" "$m" "$(awk -v k="$k" 'BEGIN{print k/1024}')" "$vf" "$vb"
	done
done
