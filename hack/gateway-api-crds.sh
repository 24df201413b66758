#!/usr/bin/env bash
# Copies the Gateway API standard-channel CRDs of the sigs.k8s.io/gateway-api
# version go.mod pins into plugin/mesh/gatewayapi, where the binary embeds
# them (`kubectl mesh install --gateway-api`). The module's files are the
# release's standard-install; plugin/mesh's tests fail when the copy and
# the pinned module differ, so bumping the module means re-running this.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"
dst=plugin/mesh/gatewayapi
rm -f "$dst"/*.yaml
for f in "$src"/gateway.networking.k8s.io_*.yaml; do
  case "$f" in *_vap_*) continue ;; esac # a ValidatingAdmissionPolicy, not a CRD
  install -m 0644 "$f" "$dst/"
done
