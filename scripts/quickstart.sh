#!/usr/bin/env bash
# Quick start: installs what Wharf needs, builds and installs it, makes a
# busybox image offline from Debian's busybox-static (`wharf import`), and
# runs a container from it with `wharf run` to show it is isolated (own
# hostname, PID 1, own mount table, Docker's default capabilities).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps.sh
scripts/install.sh /usr/local >/dev/null

rootfs=$(mktemp -d /var/tmp/wharf-quickstart.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
tar -C "$rootfs" -c . | wharf import -c 'CMD ["/bin/sh"]' - quickstart/busybox:latest >/dev/null
echo "host: hostname $(hostname), pid $$, $(wc -l < /proc/self/mounts) mounts"
exec wharf run --rm --name "quickstart-$$" quickstart/busybox sh -c \
    'echo "hostname: $(hostname)"; echo "my pid: $$"; echo processes:; ps -o pid,comm;
     echo "capabilities: $(grep CapEff /proc/self/status)"; echo mounts:; cat /proc/self/mounts'
