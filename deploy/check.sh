#!/usr/bin/env bash
# CI check of what deploy/ ships: the systemd unit passes `systemd-analyze verify`;
# the images build from local files; the compose cluster (3 etcd, 2 ifc, Prometheus)
# comes up, takes one claim on one node and verifies the witness log on the other,
# and Prometheus scrapes both nodes. Installs docker.io, docker-compose and
# prometheus if missing, and starts dockerd if none runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ifc_bin=$(realpath "${IFC_BIN:-target/debug/ifc}")

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts a prometheus service on install; the check runs its own.
  $sudo_cmd systemctl disable --now prometheus >/dev/null 2>&1 || pkill -x prometheus || true
fi

# The unit, with ExecStart pointing at a binary that exists here.
unit_dir=$(mktemp -d)
sed "s|/usr/local/bin/ifc|$ifc_bin|" deploy/ifc.service >"$unit_dir/ifc.service"
systemd-analyze verify "$unit_dir/ifc.service"
echo "systemd unit: verified"

if ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/ifc-dockerd.log 2>&1 &)
  for _ in $(seq 100); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; its log:" >&2; tail -20 /tmp/ifc-dockerd.log >&2; exit 1; }
fi
IFC_BIN="$ifc_bin" deploy/image.sh 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' || true

export IFC_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
compose=(docker-compose -p ifc-check -f deploy/compose.yaml)
trap '"${compose[@]}" down -v >/dev/null 2>&1 || true' EXIT
"${compose[@]}" up -d >/dev/null 2>&1
for port in 7401 7402; do
  for _ in $(seq 150); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { "${compose[@]}" logs --tail 20 >&2; exit 1; }
done

export IFC_TOKEN=$IFC_ADMIN_TOKEN
export IFC_SERVER=http://127.0.0.1:7401
swarm_token=$("$ifc_bin" swarm register compose-swarm --cap check:one -o json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
"$ifc_bin" task create compose-task --type check >/dev/null
"$ifc_bin" task claim compose-task --swarm compose-swarm --swarm-token "$swarm_token" >/dev/null
owner=$(IFC_SERVER=http://127.0.0.1:7402 "$ifc_bin" task owner compose-task)
[ "$owner" = compose-swarm ] || { echo "compose: expected owner compose-swarm, got $owner" >&2; exit 1; }
IFC_SERVER=http://127.0.0.1:7402 "$ifc_bin" witness verify >/dev/null

up=0
for _ in $(seq 100); do
  up=$(curl -fsS 'http://127.0.0.1:9090/api/v1/query?query=sum(up%7Bjob%3D%22ifc%22%7D)' 2>/dev/null \
    | python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' \
    || true)
  [ "${up:-0}" = 2 ] && break; sleep 0.3
done
[ "${up:-0}" = 2 ] || { echo "compose: Prometheus scrapes ${up:-0} of 2 ifc nodes" >&2; exit 1; }
echo "compose: 3 etcd + 2 ifc + Prometheus up; a claim on one node, owner and verify on the other; both scraped"
