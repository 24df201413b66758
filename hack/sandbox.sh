#!/usr/bin/env bash
# Starts a local sandbox cluster (real etcd + kube-apiserver + kwok node) with
# Istio's CRDs and the sample workloads in testdata/sandbox, and prints the
# KUBECONFIG to export. Runs until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
hack/build-tools.sh
exec go run ./hack/sandbox -dir "${SANDBOX_DIR:-$root/.sandbox}" -samples testdata/sandbox "$@"
