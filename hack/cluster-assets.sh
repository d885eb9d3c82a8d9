#!/usr/bin/env bash
# Builds the rest of a single-node Kubernetes for the cluster tests (test/cluster, make
# demo-cluster): kube-scheduler, kube-controller-manager and kubelet from the same
# k8s.io/kubernetes module as hack/envtest-assets.sh's kube-apiserver, in one `go build` so
# that the three share their packages, and with the same flags so that the Go build cache of
# the kube-apiserver build is reused (about 3 minutes on 2 cores once kube-apiserver is built).
# The result is cached in bin/cluster/ and reused. The container runtime (containerd, runc,
# CNI plugins) comes from Debian (.ci/run installs it).
#
# Usage: hack/cluster-assets.sh [DIR]     prints the assets directory on its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=${STAGING_VERSION:-v0.37.2}

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/bin/cluster}
mkdir -p "$dest"
log() { printf 'cluster-assets: %s\n' "$*" >&2; }

commands=(kube-scheduler kube-controller-manager kubelet)
missing=()
for c in "${commands[@]}"; do
  if [ -x "$dest/$c" ] && "$dest/$c" --version 2>/dev/null | grep -q "$K8S_VERSION"; then
    log "$c $K8S_VERSION already built in $dest"
  else
    missing+=("$c")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "building ${missing[*]} $K8S_VERSION from k8s.io/kubernetes (a few minutes with kube-apiserver's build cache)"
  cd "$work"
  go mod init envtest.local/cluster >/dev/null 2>&1
  # As in hack/envtest-assets.sh: the staging modules become the published ones.
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  replaces=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/.*#\1#p' "$modfile" | sort -u)
  [ -n "$replaces" ] || { log "no staging replaces found in $modfile"; exit 1; }
  args=(-require "k8s.io/kubernetes@$K8S_VERSION")
  for m in $replaces; do args+=(-replace "$m=$m@$STAGING_VERSION"); done
  go mod edit "${args[@]}"
  {
    printf 'package main\n'
    for c in "${missing[@]}"; do printf 'import _ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
  } > tools.go
  go mod tidy >/dev/null 2>&1 || true
  go get "k8s.io/kubernetes@$K8S_VERSION" >&2
  pkgs=()
  for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  # The same flags as kube-apiserver's build: the compiled packages come from the cache.
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" \
    -o "$dest/" "${pkgs[@]}"
  log "built ${missing[*]}"
fi

echo "$dest"
