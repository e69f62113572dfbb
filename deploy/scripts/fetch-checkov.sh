#!/usr/bin/env bash
# Put the checkov security scanner in a virtual environment of its own (.tools/checkov), for
# tests/deploy/test_checkov.py, and link it as .tools/bin/checkov.
#
# Its own environment because it cannot share the project's: checkov pins packaging<24 and the
# project's pytest needs packaging>=24, so `pip install .[dev]` with both would not resolve (and
# installed by hand into .venv it downgrades packaging and python-dateutil under pytest).
# The version is pinned here, the one place the tests and `make` read it from.
set -euo pipefail
CHECKOV_VERSION=3.3.30
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.tools/checkov"
link="$root/.tools/bin/checkov"
if [ -x "$venv/bin/checkov" ] && [ "$("$venv/bin/checkov" --version)" = "$CHECKOV_VERSION" ]; then
  mkdir -p "$root/.tools/bin" && ln -sf "$venv/bin/checkov" "$link"
  exit 0
fi
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
mkdir -p "$root/.tools/bin"
ln -sf "$venv/bin/checkov" "$link"
echo "fetch-checkov: checkov $("$venv/bin/checkov" --version)"
