#!/usr/bin/env bash
# Runs every test on both backends. Installs what is missing first:
# etcd (the tests start real members on loopback), Chromium and its driver
# (the dashboard's browser test).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts an etcd service on install; the tests start their own.
  $sudo_cmd systemctl stop etcd >/dev/null 2>&1 || true
fi
versions=$(etcd --version)
echo "${versions%%$'\n'*}"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings

# The benchmark harness in smoke mode (a few seconds), so it cannot rot.
# Its figures are not checked here: speed lives in docs/BENCHMARKS.md.
# `ifc` is built too: the smoke run measures SSE streams on an `ifc serve` child.
cargo build -q --workspace --all-targets --all-features
target/debug/ifc-bench --smoke >/dev/null

# The README's local cluster (3 etcd members, 2 ifc nodes): a task created on one
# node is seen on the other, then everything is torn down.
export IFC_CLUSTER_DIR="$(mktemp -d)/cluster"
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
IFC_BIN=target/debug/ifc scripts/cluster.sh up >/dev/null
IFC_TOKEN=$(cat "$IFC_CLUSTER_DIR/admin.token") IFC_SERVER=http://127.0.0.1:7401 \
  target/debug/ifc task create cluster-smoke --type smoke >/dev/null
owner=$(IFC_TOKEN=$(cat "$IFC_CLUSTER_DIR/admin.token") IFC_SERVER=http://127.0.0.1:7402 \
  target/debug/ifc task owner cluster-smoke)
[ "$owner" = unclaimed ] || { echo "cluster smoke: expected unclaimed, got $owner" >&2; exit 1; }
scripts/cluster.sh down >/dev/null
trap - EXIT
echo "local cluster: up, one task across two nodes, down"

# What deploy/ ships: the systemd unit verifies; the images build from local files;
# the compose cluster (3 etcd, 2 ifc, Prometheus) takes a claim and a verify.
IFC_BIN=target/debug/ifc deploy/check.sh

# The Python package against real `ifc serve` processes (embedded and etcd);
# run_tests.sh makes its virtualenv under clients/python/.venv from PyPI.
command -v python3 >/dev/null 2>&1 || { echo "python3 is missing: apt-get install python3 python3-venv" >&2; exit 1; }
IFC_BIN="$PWD/target/debug/ifc" clients/python/run_tests.sh -q

# The dashboard in a real headless Chromium against real `ifc serve` processes
# (embedded and etcd). Screenshots go to a scratch directory here; the committed
# ones in docs/ui/ come from running tests/ui/run_tests.sh by hand.
IFC_BIN="$PWD/target/debug/ifc" IFC_UI_SCREENSHOTS="$(mktemp -d)" tests/ui/run_tests.sh -q

# The fault suite in its short mode: a 3-member etcd cluster and two nodes under a
# recorded workload with member and node kills and pauses, embedded SIGKILL cycles,
# a checker over the history and the witness log, and witness verify at 20,000
# records on both backends (about a minute and a half).
scripts/faults.sh --short

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast "$@"
else
  cargo test --workspace --all-features --no-fail-fast "$@"
fi
