#!/usr/bin/env bash
# META.json must carry the version of ccrm.control (the one place it lives).
set -euo pipefail
root=$1
control=$(sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$root/ccrm.control")
python3 - "$root/META.json" "$control" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
want = sys.argv[2]
bad = []
if meta.get("version") != want:
    bad.append("version %r" % meta.get("version"))
for name, prov in meta.get("provides", {}).items():
    if prov.get("version") != want:
        bad.append("provides.%s.version %r" % (name, prov.get("version")))
if bad:
    sys.exit("META.json disagrees with ccrm.control (%s): %s" % (want, ", ".join(bad)))
PY
# An install script must exist for the oldest version and an update path to the current one.
[ -f "$root/extension/ccrm--$control.sql" ] || ls "$root"/extension/ccrm--*--"$control".sql >/dev/null
