#!/usr/bin/env bash
# No path of the machine the code was written on may be committed.
set -euo pipefail
cd "$1"
if git rev-parse --git-dir >/dev/null 2>&1; then files=$(git ls-files); else files=$(find . -type f -not -path './.git/*'); fi
pattern='/(work|root|home)/[A-Za-z0-9_.-]+'
hits=$(printf '%s\n' $files | grep -v '^test/checks/no_local_paths.sh$' | xargs -r grep -nEH "$pattern" 2>/dev/null || true)
if [ -n "$hits" ]; then echo "$hits"; exit 1; fi
