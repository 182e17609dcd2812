#!/usr/bin/env bash
# Sandboxed code services run as unprivileged users (see src/dynasoar/host/sandbox.py): they must
# be able to reach, not list, the Python interpreter and the project. As root, this adds the
# search bit for others (o+x) to every directory above each given path that lacks it, e.g. /root
# when Python comes from pyenv there. Nothing is made readable; idempotent.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || exit 0
for target in "$@"; do
    dir=$(readlink -f "$target")
    [[ -d "$dir" ]] || dir=$(dirname "$dir")
    while [[ "$dir" != "/" ]]; do
        mode=$(stat -c '%a' "$dir")
        if (( (8#$mode & 1) == 0 )); then
            chmod o+x "$dir"
            echo "sandbox: others may now traverse $dir (not list it)"
        fi
        dir=$(dirname "$dir")
    done
done
