#!/usr/bin/env bash
# Builds the binaries the tests need into bin/ from the Go module proxy:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok,
#   and krew (as kubectl-krew) with validate-krew-manifest for the distribution tests;
#   pilot-discovery (the real istiod) from the istio.io/istio module the plugin embeds, for the
#   end-to-end tests and the sandbox;
#   kube-score, the outside linter the install tests score the production render with;
#   istioctl, built from the same module: the reference the analyze parity test and
#   the benchmarks compare against.
# Prometheus (with promtool, for the telemetry tests) is Debian's package:
# installed with apt-get when missing, which needs root.
# Each tool gets a stamp file (bin/.stamp-<tool>) holding the version it was built
# from; a tool whose stamp matches is never rebuilt, so warm runs take a second.
# Usage: hack/build-tools.sh [tool...]   (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin"

K8S_VERSION=v1.36.1
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
KREW_VERSION=v0.4.3
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# build <name> <stamp-value> <module dir> <package> [ldflags]
build() {
  local name=$1 stamp=$2 dir=$3 pkg=$4 ldflags=${5:-}
  local stampfile="$bin/.stamp-$name"
  if [[ -x "$bin/$name" && -f "$stampfile" && "$(cat "$stampfile")" == "$stamp" ]]; then
    return 0
  fi
  echo "building $name ($stamp)…" >&2
  local start=$SECONDS
  (cd "$root/hack/tools/$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$stampfile"
  echo "built $name in $((SECONDS - start))s" >&2
}

# /version of the apiserver and kubectl must report the real release, not v0.0.0.
k8s_ldflags() {
  local v=$K8S_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  local f=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$f"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kubectl-krew validate-krew-manifest pilot-discovery istioctl kube-score prometheus)
for t in "${want[@]}"; do
  case $t in
    etcd) build etcd "$ETCD_VERSION" etcd go.etcd.io/etcd/server/v3 ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl)
      build "$t" "$K8S_VERSION" kubernetes "k8s.io/kubernetes/cmd/$t" "$(k8s_ldflags)" ;;
    kwok)
      build kwok "$KWOK_VERSION" kwok sigs.k8s.io/kwok/cmd/kwok
      # kwok has no built-in stages: use its own "fast" node/pod stages and the
      # lease heartbeat, so the fake node stays Ready under the node lifecycle controller.
      if [[ ! -f "$bin/kwok-stages.yaml" || "$(cat "$bin/.stamp-kwok-stages" 2>/dev/null)" != "$KWOK_VERSION" ]]; then
        dir=$(cd "$root/hack/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
        for f in "$dir"/kustomize/stage/node/fast/*.yaml "$dir"/kustomize/stage/node/heartbeat-with-lease/*.yaml "$dir"/kustomize/stage/pod/fast/*.yaml; do
          [[ $(basename "$f") == kustomization.yaml ]] && continue
          echo "---"; cat "$f"
        done > "$bin/kwok-stages.yaml"
        echo "$KWOK_VERSION" > "$bin/.stamp-kwok-stages"
      fi ;;
    # krew is named kubectl-krew so that `kubectl krew` dispatches to it.
    kubectl-krew) build kubectl-krew "$KREW_VERSION" krew sigs.k8s.io/krew/cmd/krew ;;
    validate-krew-manifest) build validate-krew-manifest "$KREW_VERSION" krew sigs.k8s.io/krew/cmd/validate-krew-manifest ;;
    # istioctl is the reference for the analyze parity test and the benchmarks,
    # at the istio.io/istio version the plugin embeds.
    # pilot-discovery is the real istiod the end-to-end tests and the sandbox run
    # (plugin/testenv), at the same version as the libraries the plugin embeds.
    pilot-discovery) build pilot-discovery "$(grep 'istio.io/istio ' "$root/go.mod" | awk '{print $2}')" istio istio.io/istio/pilot/cmd/pilot-discovery ;;
    kube-score) build kube-score "$(sed -n 's#.*github.com/zegl/kube-score \(v[^ ]*\).*#\1#p' "$root/hack/tools/kubescore/go.mod" | head -1)" kubescore github.com/zegl/kube-score/cmd/kube-score ;;
    istioctl) build istioctl "$(grep 'istio.io/istio ' "$root/go.mod" | awk '{print $2}')" istio istio.io/istio/istioctl/cmd/istioctl ;;
    prometheus)
      if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
        echo "installing Debian's prometheus package…" >&2
        sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
      fi ;;
    # GNU time measures the benchmarks' peak RSS: it forks the command from a
    # small process, where a child of the (large) benchmark process would
    # inherit its high-water mark.
    gnu-time)
      if [[ ! -x /usr/bin/time ]]; then
        echo "installing Debian's time package…" >&2
        sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends time >/dev/null
      fi ;;
    *) echo "build-tools: unknown tool $t" >&2; exit 64 ;;
  esac
done
