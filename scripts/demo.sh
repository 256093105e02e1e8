#!/usr/bin/env bash
# The main job on a fresh Debian machine with Python 3.11: install docker-registry and acceld,
# start a local registry, push sample images, and run `acceld plan`, `acceld backfill`,
# `acceld plan` again against it (embedded defaults: SQLite state, no other services).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-registry >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-registry
  # The package starts its own service on :5000; the demo starts a registry of its own on a
  # free port, so only that service, which this script installed, is stopped.
  $SUDO service docker-registry stop >/dev/null 2>&1 || true
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e .
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python scripts/demo.py
