#!/usr/bin/env bash
# Installs the Debian packages dynasoar needs, when running as root and they are missing.
# --check only reports what is missing (used on every `make install`; cheap).
set -euo pipefail

# iproute2 + iptables: dynasoar bench experiment (network namespaces, veth, tc, NFQUEUE)
# chromium + chromium-driver: the SP's status page is tested in a real (headless) browser
# systemd: systemd-analyze verify checks the units in deploy/systemd, systemd-socket-activate
# starts the SP on a socket the way systemd passes it
# postgresql: the shared registry of several SPs (tests start throwaway clusters as the
# package's own unprivileged "postgres" user); haproxy: the load balancer in front of them
packages=(python3-venv python3-dev gcc pkg-config curl iproute2 iptables chromium chromium-driver
          systemd postgresql haproxy)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# A Python that already has venv + pip (pyenv, CI images) does not need the Debian ones.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
    keep=()
    for p in "${missing[@]}"; do
        [[ "$p" == python3-venv || "$p" == python3-dev ]] || keep+=("$p")
    done
    missing=("${keep[@]+"${keep[@]}"}")
fi

[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "${1:-}" == "--check" ]]; then
    echo "note: Debian packages not installed: ${missing[*]}" >&2
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "error: missing Debian packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
