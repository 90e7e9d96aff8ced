#!/usr/bin/env bash
# The dashboard in a real browser: sets up tests/ui/.venv (selenium, httpx,
# pytest from PyPI), then drives headless Chromium against real `ifc serve`
# processes (the embedded store, and etcd when it is installed; IFC_UI_BACKENDS
# picks: "embedded etcd" by default). IFC_BIN picks the binary (an absolute
# path; default: the repository's target/debug/ifc). Screenshots go to
# docs/ui/. Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export IFC_BIN="${IFC_BIN:-$repo/target/debug/ifc}"
export IFC_UI_SCREENSHOTS="${IFC_UI_SCREENSHOTS:-$repo/docs/ui}"

if [[ ! -x "$IFC_BIN" ]]; then
  echo "no ifc binary at $IFC_BIN: build it with \`cargo build --workspace --all-targets --all-features\` (or set IFC_BIN)" >&2
  exit 1
fi
export CHROMIUM_BIN="${CHROMIUM_BIN:-$(command -v chromium || command -v chromium-browser || true)}"
export CHROMEDRIVER_BIN="${CHROMEDRIVER_BIN:-$(command -v chromedriver || true)}"
if [[ -z "$CHROMIUM_BIN" || -z "$CHROMEDRIVER_BIN" ]]; then
  echo "Chromium and its driver are needed: \`apt-get install -y chromium chromium-driver\` (or set CHROMIUM_BIN and CHROMEDRIVER_BIN)" >&2
  exit 1
fi
venv="$here/.venv"
source "$repo/scripts/python-venv.sh"
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"

cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
