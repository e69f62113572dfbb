#!/usr/bin/env bash
# Builds Flagger itself (github.com/fluxcd/flagger's cmd/flagger) from the Go module proxy, for
# the side-by-side benchmark (bench/flagger_side_by_side.py). The binary and Flagger's own CRD
# file (artifacts/flagger/crd.yaml) go to ${COALMINE_CACHE:-~/.cache/coalmine}/flagger-<version>/,
# with a stamp written last, so a second run costs nothing. Nothing built enters the repository.
#
# Flagger's module has no replace directives, so `go install module/cmd/flagger@version` builds it
# in module mode with exactly the versions its go.mod pins.
#
#   scripts/build-flagger.sh               build (once) and print where
#   scripts/build-flagger.sh --print-dir   print the directory only (the bench reads it)
#   FLAGGER_VERSION=v1.36.1 scripts/build-flagger.sh
set -euo pipefail

# The newest release the Go module proxy lists (`go list -m -versions github.com/fluxcd/flagger`
# lists only this one; its go.mod asks for go 1.21).
FLAGGER_VERSION=${FLAGGER_VERSION:-v1.36.1}

CACHE_ROOT=${COALMINE_CACHE:-$HOME/.cache/coalmine}
OUT="$CACHE_ROOT/flagger-$FLAGGER_VERSION"
BIN="$OUT/bin"
STAMP="$OUT/.complete"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$OUT"
  exit 0
fi
if [[ -f "$STAMP" ]]; then
  echo "flagger: cached in $OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build-flagger: go is not installed" >&2; exit 1; }

export CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$BIN"
start=$(date +%s)
# Go's own output goes to a log beside the directory, shown only when a step fails.
LOG="$OUT.log"
: >"$LOG"
exec 3>&1 4>&2 1>>"$LOG" 2>&1
trap 'rc=$?; exec 1>&3 2>&4; if [[ $rc -ne 0 ]]; then echo "build-flagger: failed; the end of $LOG:" >&2; tail -n 30 "$LOG" >&2; fi' EXIT
step() { printf '[build-flagger %4ds] %s\n' "$(( $(date +%s) - start ))" "$*" >&3; }
step "building Flagger $FLAGGER_VERSION into $OUT (once; a few minutes on two cores)"

step "downloading github.com/fluxcd/flagger@$FLAGGER_VERSION"
dir=$(go mod download -json "github.com/fluxcd/flagger@$FLAGGER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[[ -n "$dir" && -f "$dir/artifacts/flagger/crd.yaml" ]] || { echo "build-flagger: no artifacts/flagger/crd.yaml in $dir" >&2; exit 1; }

step "compiling cmd/flagger (the long part)"
GOBIN="$BIN" go install -trimpath \
  -ldflags "-s -w -X github.com/fluxcd/flagger/pkg/version.VERSION=${FLAGGER_VERSION#v}" \
  "github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION"

mkdir -p "$OUT/crds"
cp "$dir/artifacts/flagger/crd.yaml" "$OUT/crds/flagger.yaml"
chmod -R u+w "$OUT/crds"

"$BIN/flagger" -version >&3 2>&1 || true
touch "$STAMP"
step "done: $OUT ($(du -sh "$BIN" | cut -f1) of binary)"
