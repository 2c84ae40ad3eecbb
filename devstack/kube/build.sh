#!/usr/bin/env bash
# Builds the control-plane binaries the test stack runs (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler), the kubelet of its node, and helm into $1 (default: the ws2kafka cache). Binaries already
# there are kept, so a warm run costs nothing. Go's module and build caches make a rebuild
# after a version bump incremental.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes"{print $3} $1=="k8s.io/kubernetes"{print $2}' go.mod | head -1)
HELM_MODULE="helm.sh/helm/v3"
HELM_VERSION="v3.22.0"
BIN_DIR="${1:-${WS2KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ws2kafka}/bin/k8s-${K8S_VERSION}}"
mkdir -p "$BIN_DIR"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
stamp="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor} -X k8s.io/component-base/version.gitTreeState=clean"

build() {  # build NAME PACKAGE
  local name=$1 pkg=$2
  if [ -x "$BIN_DIR/$name" ]; then echo "devstack: $name cached in $BIN_DIR"; return; fi
  echo "devstack: building $name ($pkg), first build takes minutes..."
  local started=$SECONDS
  go build -p 2 -trimpath -ldflags "$stamp" -o "$BIN_DIR/$name.tmp" "$pkg"
  mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
  echo "devstack: built $name in $((SECONDS - started)) s"
}

build etcd ./cmd/etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
# the node's: after the three above, only about a hundred packages are new (a minute or two)
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubelet k8s.io/kubernetes/cmd/kubelet
if [ ! -x "$BIN_DIR/helm" ]; then
  echo "devstack: building helm ${HELM_VERSION}..."
  started=$SECONDS
  GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" "${HELM_MODULE}/cmd/helm@${HELM_VERSION}"
  echo "devstack: built helm in $((SECONDS - started)) s"
fi
echo "devstack: control-plane binaries ready in $BIN_DIR"
