#!/usr/bin/env bash
# The fault suite (tests/faults/run.py): a real 3-member etcd cluster and two
# `ifc serve` nodes under a recorded workload, with member and node kills and
# pauses, then the embedded store's server SIGKILLed under load; a checker proves
# the invariants from the history and the witness log. Last, witness verify at
# scale on both backends: `ifc-fill-witness` (next to $IFC_BIN, or $IFC_FILL_BIN;
# `cargo build -p ifc-bench`) fills a store, verify must count every record in
# bounded memory (CI: 20,000 records; full: 1,000,000).
#
#   scripts/faults.sh --short                      # CI
#   scripts/faults.sh --out docs/RELIABILITY.md    # the full run, by hand
#
# Uses clients/python/.venv (made by clients/python/run_tests.sh) for httpx.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
venv=clients/python/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet -e clients/python
fi
export IFC_BIN=${IFC_BIN:-target/debug/ifc}
exec "$venv/bin/python" tests/faults/run.py --ifc-bin "$IFC_BIN" "$@"
