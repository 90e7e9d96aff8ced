#!/usr/bin/env bash
# Builds the images from local files only: `ifc:local` from an `ifc` binary
# (default target/release/ifc; IFC_BIN overrides), `ifc-etcd:local` from the
# machine's `etcd` and `ifc-prometheus:local` from its `prometheus`. Each image holds the binary and exactly the shared libraries
# `ldd` says it links, on an empty (scratch) base.
set -euo pipefail
cd "$(dirname "$0")"
ifc_bin=${IFC_BIN:-../target/release/ifc}
etcd_bin=$(command -v etcd) || { echo "etcd is missing: apt-get install etcd-server" >&2; exit 1; }
prom_bin=$(command -v prometheus) || { echo "prometheus is missing: apt-get install prometheus" >&2; exit 1; }
[ -x "$ifc_bin" ] || { echo "no ifc binary at $ifc_bin: cargo build --release -p ifc" >&2; exit 1; }

# rootfs DIR BINARY DEST: the binary at DEST inside DIR, with its libraries.
rootfs() {
  local dir=$1 bin=$2 dest=$3 lib
  rm -rf "$dir"; mkdir -p "$dir$(dirname "$dest")" "$dir/etc" "$dir/tmp"
  cp "$bin" "$dir$dest"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$dir$(dirname "$lib")"; cp -L "$lib" "$dir$lib"
  done
  echo "nobody:x:65532:65532:nobody:/data:/sbin/nologin" >"$dir/etc/passwd"
  chmod 1777 "$dir/tmp"
}
rootfs rootfs "$ifc_bin" /usr/local/bin/ifc
rootfs rootfs-etcd "$etcd_bin" /usr/bin/etcd
rootfs rootfs-prometheus "$prom_bin" /usr/bin/prometheus
rm -rf data; mkdir -m 0700 data
docker build -q -t ifc:local -f Dockerfile . >/dev/null
docker build -q -t ifc-etcd:local -f Dockerfile.etcd . >/dev/null
docker build -q -t ifc-prometheus:local -f Dockerfile.prometheus . >/dev/null
rm -rf rootfs rootfs-etcd rootfs-prometheus data
echo "built ifc:local, ifc-etcd:local and ifc-prometheus:local"
