#!/usr/bin/env bash
# The full benchmark run, by hand (~90 min on 2 cores; the etcd soak is ~50): installs the peers it
# compares against (Postgres, Redis) if missing, builds release, and writes
# docs/BENCHMARKS.md and its charts. CI runs only `ifc-bench --smoke`.
#
#   scripts/bench.sh                 # the whole report
#   scripts/bench.sh --only peers    # one phase, printed
#   scripts/bench.sh --only soak --out docs/SOAK.md   # one phase, its own report
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
# The packages may start their own servers; the bench starts its own on
# loopback ports and wants the machine otherwise quiet.
service postgresql stop >/dev/null 2>&1 || true
service redis-server stop >/dev/null 2>&1 || true
# The Python row needs the package's virtualenv.
venv=clients/python/.venv
source scripts/python-venv.sh
"$venv/bin/python" -m pip install --quiet -e clients/python
cargo build --release -p ifc -p ifc-bench
if [ $# -eq 0 ]; then
  set -- --out docs/BENCHMARKS.md
fi
exec target/release/ifc-bench "$@"
