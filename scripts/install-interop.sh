#!/usr/bin/env bash
# Installs the interop suite's peers (tests/interop), called by `make install`; idempotent and
# quick when everything is there.
#   gSOAP (wsdl2h, soapcpp2, libgsoap++) and g++   Debian packages, when root and missing
#   node and npm                                    Debian packages, when root and no node at all
#   the npm `soap` package                          npm ci into tests/interop/node (package-lock.json)
# suds-community and zeep come with the Python `test` extra (pyproject.toml).
# Not root and something missing: says so; those peers' tests skip with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_DIR=tests/interop/node

missing=()
for p in gsoap libgsoap-dev g++; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# A node from elsewhere (nodesource, nvm) will do; Debian's only when there is none.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "note: interop peers need Debian packages: ${missing[*]} (run as root, or:" \
             "sudo apt-get install ${missing[*]}); their tests will be skipped" >&2
    fi
fi

# npm ci only when the lock file changed since the last install (node_modules/.package-lock.json
# is npm's record of what it installed).
if command -v npm >/dev/null 2>&1; then
    stamp="$NODE_DIR/node_modules/.dynasoar-lock.sha256"
    want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
fi
