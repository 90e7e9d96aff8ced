#!/usr/bin/env bash
# Sets up clients/python/.venv (from PyPI), installs ifc-client with its test
# extras, and runs the pytest suite against real `ifc serve` processes (the
# embedded store and a real etcd). IFC_BIN picks the binary (default: the
# repository's target/debug/ifc, built by
# `cargo build --workspace --all-targets --all-features`). Extra arguments go
# to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export IFC_BIN="${IFC_BIN:-$repo/target/debug/ifc}"

if [[ ! -x "$IFC_BIN" ]]; then
  echo "no ifc binary at $IFC_BIN: build it with \`cargo build --workspace --all-targets --all-features\` (or set IFC_BIN)" >&2
  exit 1
fi
if ! command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1; then
  echo "etcd is not installed: \`apt-get install -y etcd-server\` (or set ETCD_BIN)" >&2
  exit 1
fi

venv="$here/.venv"
source "$repo/scripts/python-venv.sh"
"$venv/bin/python" -m pip install --quiet -e "$here[test]"

cd "$here"
exec "$venv/bin/python" -m pytest "$@"
