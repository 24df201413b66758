#!/usr/bin/env bash
# Prints the release version: the tag (git describe) when the commit has
# one, else a Go-style pseudo-version of the commit, v0.0.0-<commit time>-<sha12>,
# so that krew (which requires semver starting with "v") accepts a build of
# any commit. A dirty tree gets ".dirty" (semver allows it in a pre-release).
set -euo pipefail
cd "$(dirname "$0")/.."
if v=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
  echo "$v"
  exit 0
fi
if ! sha=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  echo v0.0.0-dev
  exit 0
fi
v="v0.0.0-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)-$sha"
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || v+=".dirty"
echo "$v"
