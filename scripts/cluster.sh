#!/usr/bin/env bash
# A local cluster to try the distributed mode: 3 etcd members and 2 `ifc serve`
# nodes on loopback, sharing one admin token.
#
#   scripts/cluster.sh up      start it (builds `ifc` unless IFC_BIN names one)
#   scripts/cluster.sh status  what runs, and where
#   scripts/cluster.sh down    stop everything and delete its data
#
# etcd clients on 127.0.0.1:23791-23793 (peers 23801-23803); ifc nodes on
# http://127.0.0.1:7401 and :7402. State lives in $IFC_CLUSTER_DIR (./ifc-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${IFC_CLUSTER_DIR:-./ifc-cluster}
members=(1 2 3)
nodes=(1 2)

client_url() { echo "http://127.0.0.1:2379$1"; }
peer_url() { echo "http://127.0.0.1:2380$1"; }

endpoints() {
  local list=() m
  for m in "${members[@]}"; do list+=("$(client_url "$m")"); done
  (IFS=,; echo "${list[*]}")
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
  command -v etcd >/dev/null || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
  if [ -z "${IFC_BIN:-}" ]; then
    cargo build --release -q -p ifc
    IFC_BIN=target/release/ifc
  fi
  mkdir -p "$dir"
  local cluster=() m n
  for m in "${members[@]}"; do cluster+=("etcd$m=$(peer_url "$m")"); done
  for m in "${members[@]}"; do
    alive "$dir/etcd$m.pid" && continue
    etcd --name "etcd$m" --data-dir "$dir/etcd$m" \
      --listen-client-urls "$(client_url "$m")" --advertise-client-urls "$(client_url "$m")" \
      --listen-peer-urls "$(peer_url "$m")" --initial-advertise-peer-urls "$(peer_url "$m")" \
      --initial-cluster "$(IFS=,; echo "${cluster[*]}")" --initial-cluster-state new \
      --initial-cluster-token ifc-local >"$dir/etcd$m.log" 2>&1 &
    echo $! >"$dir/etcd$m.pid"
  done
  [ -f "$dir/admin.token" ] || { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token"; }
  chmod 600 "$dir/admin.token"
  for n in "${nodes[@]}"; do
    alive "$dir/ifc$n.pid" && continue
    IFC_ADMIN_TOKEN=$(cat "$dir/admin.token") "$IFC_BIN" serve --etcd "$(endpoints)" \
      --listen "127.0.0.1:740$n" --data-dir "$dir/ifc$n" >"$dir/ifc$n.log" 2>&1 &
    echo $! >"$dir/ifc$n.pid"
  done
  for n in "${nodes[@]}"; do
    local tries=0
    until curl -fsS "http://127.0.0.1:740$n/readyz" >/dev/null 2>&1; do
      tries=$((tries + 1))
      if [ $tries -gt 100 ] || ! alive "$dir/ifc$n.pid"; then
        echo "ifc node $n did not become ready; its log:" >&2; tail -20 "$dir/ifc$n.log" >&2; exit 1
      fi
      sleep 0.2
    done
  done
  status
  echo
  echo "Use it:  export IFC_SERVER=http://127.0.0.1:7401 IFC_TOKEN=\$(cat $dir/admin.token)"
}

status() {
  local m n
  for m in "${members[@]}"; do
    if alive "$dir/etcd$m.pid"; then s=running; else s=stopped; fi
    echo "etcd$m  $(client_url "$m")  $s"
  done
  for n in "${nodes[@]}"; do
    if alive "$dir/ifc$n.pid"; then s=running; else s=stopped; fi
    echo "ifc$n   http://127.0.0.1:740$n  $s"
  done
}

down() {
  local f
  for f in "$dir"/ifc*.pid "$dir"/etcd*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$dir"/ifc*.pid "$dir"/etcd*.pid; do
    [ -f "$f" ] || continue
    for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "cluster stopped, $dir removed"
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
