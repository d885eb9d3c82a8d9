#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from their Go modules, because no
# binary download site is reachable here and the Go module proxy is. The result is cached in
# bin/envtest/ and reused; the first kube-apiserver build takes about 11 minutes on 2 cores.
#
# Usage: hack/envtest-assets.sh [DIR]     prints the assets directory on its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/bin/envtest}
mkdir -p "$dest"
log() { printf 'envtest-assets: %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -x "$dest/kube-apiserver" ] && "$dest/kube-apiserver" --version 2>/dev/null | grep -q "$K8S_VERSION"; then
  log "kube-apiserver $K8S_VERSION already built in $dest"
else
  log "building kube-apiserver $K8S_VERSION from k8s.io/kubernetes (about 11 minutes the first time)"
  mkdir -p "$work/apiserver"
  cd "$work/apiserver"
  go mod init envtest.local/apiserver >/dev/null 2>&1
  # k8s.io/kubernetes points its staging modules at ./staging/...; replace each with the
  # published module of the matching version.
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  replaces=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/.*#\1#p' "$modfile" | sort -u)
  [ -n "$replaces" ] || { log "no staging replaces found in $modfile"; exit 1; }
  args=(-require "k8s.io/kubernetes@$K8S_VERSION")
  for m in $replaces; do args+=(-replace "$m=$m@$STAGING_VERSION"); done
  go mod edit "${args[@]}"
  printf 'package main\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > tools.go
  go mod tidy >/dev/null 2>&1 || true
  go get "k8s.io/kubernetes@$K8S_VERSION" >&2
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
    -o "$dest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  log "kube-apiserver built"
fi

if [ -x "$dest/etcd" ] && "$dest/etcd" --version 2>/dev/null | grep -q "${ETCD_VERSION#v}"; then
  log "etcd $ETCD_VERSION already built in $dest"
else
  log "building etcd $ETCD_VERSION from go.etcd.io/etcd/server/v3 (about a minute)"
  mkdir -p "$work/etcd"
  cd "$work/etcd"
  go mod init envtest.local/etcd >/dev/null 2>&1
  printf 'package main\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
  go mod tidy >/dev/null 2>&1 || true
  CGO_ENABLED=0 go build -trimpath -o "$dest/etcd" go.etcd.io/etcd/server/v3
  log "etcd built"
fi

echo "$dest"
