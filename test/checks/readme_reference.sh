#!/usr/bin/env bash
# The README's reference must name every function, table, view and GUC that exists.
set -euo pipefail
root=$1
python3 - "$root" <<'PY'
import glob, re, sys
root = sys.argv[1]
readme = open(root + "/README.md").read()
names = set()
for f in glob.glob(root + "/extension/ccrm*.sql"):
    sql = open(f).read()
    for m in re.finditer(r'CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE|TABLE|VIEW)\s+ccrm\.(\w+)', sql, re.I):
        names.add(m.group(2))
for f in glob.glob(root + "/src/*.c"):
    for m in re.finditer(r'"(ccrm\.[a-z_]+)"', open(f).read()):
        if re.search(r'DefineCustom\w+Variable\(\s*"' + re.escape(m.group(1)) + '"', open(f).read()):
            names.add(m.group(1))
def documented(n):
    full = n if n.startswith("ccrm.") else "ccrm." + n
    return re.search(re.escape(full) + r'(?!\w)', readme) is not None
missing = sorted(n for n in names if not documented(n))
if missing:
    sys.exit("README.md does not document: " + ", ".join(missing))
PY
