#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the test suite from Go modules:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet (k8s.io/kubernetes;
# the kubelet runs the real test node of tests/node) and etcd
# (go.etcd.io/etcd/server/v3), at the versions pinned in hack/kube/go.mod and hack/etcd/go.mod.
# Binaries go to a cache directory outside the repository; nothing is done when they exist.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
kube_version="$(awk '/^require k8s.io\/kubernetes /{print $3}' "$here/kube/go.mod")"
etcd_version="$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$here/etcd/go.mod")"
cache="${AI_MODELS_CACHE:-$HOME/.cache/ai-models}"
out="$cache/control-plane/kube-$kube_version-etcd-$etcd_version"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
major="${kube_version#v}"; major="${major%%.*}"
minor="${kube_version#v*.}"; minor="${minor%%.*}"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  # Without these the binaries report v0.0.0-master, which breaks version checks (helm kubeVersion).
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
done
build() {  # build <module dir> <package> <binary name>
  if [[ -x "$out/$3" ]]; then
    return 0
  fi
  echo "building $3 ($2) into $out" >&2
  (cd "$here/$1" && go build -trimpath -ldflags "$kube_ldflags" -o "$out/$3.tmp" "$2")
  mv "$out/$3.tmp" "$out/$3"
}
build etcd go.etcd.io/etcd/server/v3 etcd
build kube k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build kube k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build kube k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
build kube k8s.io/kubernetes/cmd/kubectl kubectl
build kube k8s.io/kubernetes/cmd/kubelet kubelet
echo "$out"
