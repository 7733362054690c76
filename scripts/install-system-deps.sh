#!/usr/bin/env bash
# Installs the Debian packages listed in requirements/apt.txt and deps/apt-data.txt (fonts,
# including the hard preset's numeral-script fonts) that are missing.
# Idempotent and quick when everything is there; needs root only to install.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t wanted < <(cat requirements/apt.txt deps/apt-data.txt 2>/dev/null | sed "s/#.*//" | grep -vE "^\s*$")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A python3 that can make a venv (Debian splits venv support out).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3 python3-venv python3-dev)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: not root; install these packages first: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
