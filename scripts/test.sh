#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine with Python 3.11, then runs them:
# the real registry (docker-registry) and promtool from Debian, acceld with its test extras in
# .venv, the layering contract, lint, types, and the whole pytest suite (slow marker included).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The Nydus oracles: fsck.erofs/dump.erofs read RAFS v6, umoci flattens the original image.
command -v fsck.erofs >/dev/null 2>&1 || need+=(erofs-utils)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
# A throwaway PostgreSQL cluster for the shared state store (initdb and postgres, out of PATH).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
  # Debian's packages start their own services; the tests start theirs on free ports. Only the
  # services of packages installed just now are stopped: never a process found by its name.
  for pkg in "${need[@]}"; do
    case "$pkg" in docker-registry|prometheus|postgresql)
      $SUDO service "$pkg" stop >/dev/null 2>&1 || true ;;
    esac
  done
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,dev]'
export PATH="$PWD/.venv/bin:$PATH"

lint-imports
ruff check .
mypy
pytest -q -m "slow or not slow" "$@"
