"""Rewrites run-validation.sh for a host without jq and bc (the device machine)."""
import sys

text = open(sys.argv[1]).read()
out = []
for line in text.split("\n"):
    if line.startswith("our_ids()"):
        line = (
            "our_ids()     { \"$RUNTIME_PATH\" list -f json 2>/dev/null | python3 -c 'import json,sys\n"
            "p=sys.argv[1]\n"
            "for c in (json.load(sys.stdin) or []):\n"
            "    if c.get(\"bundle\",\"\").startswith(p): print(c[\"id\"])' \"$WORKTMP/\"; }"
        )
    line = line.replace(
        'dur=$(echo "$(date +%s.%N) - $start" | bc)',
        "dur=$(awk -v a=\"$(date +%s.%N)\" -v b=\"$start\" 'BEGIN{print a-b}')",
    )
    line = line.replace("mktemp -d /var/tmp/wharf-rt-tmp.XXXXXX", "mktemp -d /var/tmp/rt-tmp.XXXXXX")
    out.append(line)
sys.stdout.write("\n".join(out))
