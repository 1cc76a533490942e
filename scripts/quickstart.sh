#!/usr/bin/env bash
# Quick start: installs what Wharf needs, builds and installs it, makes a
# busybox bundle offline from Debian's busybox-static, and runs it with the
# runc-compatible CLI to show it is isolated (own hostname, PID 1, own
# mount table).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
scripts/deps.sh
scripts/install.sh /usr/local >/dev/null

bundle=/var/tmp/wharf-quickstart
rm -rf "$bundle"
mkdir -p "$bundle/rootfs"/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$bundle/rootfs/bin/$applet" ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"
cd "$bundle"
# The default config from `wharf-runc spec`, with a command that shows what
# the container sees instead of an interactive shell.
wharf-runc spec
sed -i -e 's/"terminal": true/"terminal": false/' \
       -e 's/"hostname": "wharf"/"hostname": "wharf-quickstart"/' \
       -e 's|^\( *\)"sh"$|\1"sh", "-c", "echo hostname: $(hostname); echo my pid: $$; echo processes:; ps -o pid,comm; echo mounts:; cat /proc/self/mounts"|' \
       config.json
echo "host: hostname $(hostname), pid $$, $(wc -l < /proc/self/mounts) mounts"
exec wharf-runc --root /run/wharf/quickstart run --bundle "$bundle" "quickstart-$$"
