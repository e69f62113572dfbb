#!/usr/bin/env bash
# Builds the real Kubernetes control plane that the local stack and the tests run on:
# kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes), etcd and kwok,
# all from the Go module proxy at pinned versions. The binaries and the CRD files go to
# ${COALMINE_CACHE:-~/.cache/coalmine}/k8s-<version>/, keyed by every pinned version, so a second
# run costs nothing. Nothing built is ever written inside the repository.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points ~30 k8s.io/* staging modules at
# local directories. We build from a small wrapper module that requires k8s.io/kubernetes and
# replaces each of those staging modules with its published v0.Y.Z release; the list is read
# from the downloaded go.mod, never written by hand. etcd's server module has local replaces too
# and is built the same way.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
ISTIO_API_VERSION=${ISTIO_API_VERSION:-v1.32.0}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.3}

CACHE_ROOT=${COALMINE_CACHE:-$HOME/.cache/coalmine}
KEY="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"
OUT="$CACHE_ROOT/$KEY"
BIN="$OUT/bin"
# Bumped whenever what the build writes changes, so an older cache is rebuilt (2: the Gateway API
# CRDs as one document per file).
STAMP="$OUT/.complete-2"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$OUT"
  exit 0
fi
if [[ "${1:-}" == "--print-stamp" ]]; then  # the file whose presence says the build is complete
  echo "$STAMP"
  exit 0
fi
if [[ -f "$STAMP" ]]; then
  echo "control plane: cached in $OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build-k8s: go is not installed (Go 1.26 is needed)" >&2; exit 1; }

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
WORK="$OUT.work"
rm -rf "$WORK"
mkdir -p "$WORK" "$BIN"
start=$(date +%s)
# Go's own output (hundreds of "downloading" lines) goes to a log, shown only when a step fails.
LOG="$OUT.log"
: >"$LOG"
exec 3>&1 4>&2 1>>"$LOG" 2>&1
trap 'rc=$?; exec 1>&3 2>&4; if [[ $rc -ne 0 ]]; then echo "build-k8s: failed; the end of $LOG:" >&2; tail -n 30 "$LOG" >&2; fi' EXIT
step() { printf '[build-k8s %4ds] %s\n' "$(( $(date +%s) - start ))" "$*" >&3; }
step "building the control plane into $OUT (once; about 7 minutes on two cores)"

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
patch=${K8S_VERSION##*.}
staging_version="v0.${minor}.${patch}"

# --- kubernetes -----------------------------------------------------------------------------
step "reading k8s.io/kubernetes@$K8S_VERSION's go.mod"
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
mapfile -t staging < <(sed -n 's#^\t\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")
[[ ${#staging[@]} -gt 20 ]] || { echo "build-k8s: found only ${#staging[@]} staging modules in $gomod" >&2; exit 1; }
step "${#staging[@]} staging modules, replaced at $staging_version"

mkdir -p "$WORK/kubernetes"
{
  echo "module coalmine.local/k8sbuild"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} >"$WORK/kubernetes/go.mod"

pkg=k8s.io/component-base/version
cgo=k8s.io/client-go/pkg/version
date_now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for p in $pkg $cgo; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date_now"
done

(
  cd "$WORK/kubernetes"
  step "resolving modules (go mod download)"
  go get "k8s.io/kubernetes@$K8S_VERSION" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler >/dev/null 2>&1 || go get "k8s.io/kubernetes@$K8S_VERSION"
  step "compiling kube-apiserver, kube-controller-manager, kube-scheduler (the long part)"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
)

# --- etcd -----------------------------------------------------------------------------------
step "etcd $ETCD_VERSION"
gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
mapfile -t etcd_local < <(sed -n 's#^\t\(go\.etcd\.io/etcd/[a-z0-9/]*\) => \.\./.*#\1#p' "$gomod")
mkdir -p "$WORK/etcd"
{
  echo "module coalmine.local/etcdbuild"
  echo
  echo "go 1.26.0"
  echo
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo
  echo "replace ("
  for m in "${etcd_local[@]}"; do echo "	$m => $m $ETCD_VERSION"; done
  echo ")"
} >"$WORK/etcd/go.mod"
(
  cd "$WORK/etcd"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
)

# --- kwok -----------------------------------------------------------------------------------
step "kwok $KWOK_VERSION"
GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
mkdir -p "$OUT/kwok-stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cp "$kwok_dir/kustomize/stage/$f" "$OUT/kwok-stages/"
done

# --- CRDs a user's cluster has ---------------------------------------------------------------
step "Istio ($ISTIO_API_VERSION) and Gateway API ($GATEWAY_API_VERSION) CRDs"
mkdir -p "$OUT/crds"
istio_dir=$(go mod download -json "istio.io/api@$ISTIO_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
cp "$istio_dir/kubernetes/customresourcedefinitions.gen.yaml" "$OUT/crds/istio.yaml"
gw_dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
# One document per file: the files do not start with "---", and plain cat would run them together
# into one document whose repeated keys leave a single, wrong CRD.
for f in "$gw_dir"/config/crd/standard/*.yaml; do echo "---"; cat "$f"; done >"$OUT/crds/gateway-api.yaml"
chmod -R u+w "$OUT/crds" "$OUT/kwok-stages"

rm -rf "$WORK"
"$BIN/kube-apiserver" --version >&3
touch "$STAMP"
step "done: $OUT ($(du -sh "$BIN" | cut -f1) of binaries)"
