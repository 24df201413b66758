#!/usr/bin/env bash
# Release archives: CGO-free, stripped builds with the version stamped, one
# .tar.gz (.zip for windows) per platform holding kubectl-mesh and LICENSE,
# a .sha256 beside each, and the krew manifest rendered from krew/mesh.yaml
# with the real checksums into $DIST/krew/mesh.yaml.
# Env: VERSION (default: hack/version.sh: the tag, or v0.0.0-<time>-<sha>), DIST (default: dist),
#      PLATFORMS (default: all six), BASE_URL (default: the GitHub release),
#      ONLY_BUILT=1 renders only the platforms built (a partial build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VERSION=${VERSION:-$(hack/version.sh)}
# krew refuses a version that is not semver with a leading "v".
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
if [[ ! $VERSION =~ $semver ]]; then
  echo "dist: VERSION=$VERSION is not a semantic version starting with v (krew refuses it): use e.g. VERSION=v0.1.0" >&2
  exit 64
fi
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"}
mkdir -p "$DIST"
DIST=$(cd "$DIST" && pwd)
export CGO_ENABLED=0

for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  name="kubectl-mesh_${VERSION}_${os}_${arch}"
  work="$DIST/build/$name"
  rm -rf "$work" && mkdir -p "$work"
  exe=kubectl-mesh
  [[ $os == windows ]] && exe=kubectl-mesh.exe
  echo "building $name…" >&2
  GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X github.com/kubectl-mesh/kubectl-mesh/plugin/cli.Version=$VERSION" \
    -o "$work/$exe" ./cmd/kubectl-mesh
  cp LICENSE "$work/"
  if [[ $os == windows ]]; then
    archive="$name.zip"
    (cd "$work" && rm -f "$DIST/$archive" && zip -q -X "$DIST/$archive" "$exe" LICENSE)
  else
    archive="$name.tar.gz"
    tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$DIST/$archive" "$exe" LICENSE
  fi
  (cd "$DIST" && sha256sum "$archive" > "$archive.sha256")
done

args=(-template krew/mesh.yaml -version "$VERSION" -dist "$DIST" -out "$DIST/krew/mesh.yaml")
[[ -n ${BASE_URL:-} ]] && args+=(-base-url "$BASE_URL")
[[ -n ${ONLY_BUILT:-} ]] && args+=(-only-built)
go run ./hack/krew-manifest "${args[@]}"
echo "wrote $DIST/krew/mesh.yaml" >&2
