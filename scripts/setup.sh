#!/usr/bin/env bash
# Install everything the project needs into ./.venv from the lock file (uv.lock), from scratch.
# Idempotent: a second run only checks that the environment matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
if [ ! -x .tools/bin/uv ] || ! .tools/bin/uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
  "$PYTHON" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
.tools/bin/uv sync --frozen --python "$("$PYTHON" -c 'import sys; print(sys.executable)')" --quiet
