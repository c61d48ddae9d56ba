#!/usr/bin/env bash
# Set everything up, seed the demo cooperative and serve the API on SQLite (./coopgig.db).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/coopgig demo
echo "Serving on http://127.0.0.1:${PORT:-8000} (API docs at /docs). Ctrl-C to stop."
exec .venv/bin/coopgig serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
