#!/usr/bin/env bash
# Set everything up and run the whole test suite. Runs on PostgreSQL when DATABASE_URL is set or a
# server answers on 127.0.0.1:5432 (a fresh database `coopgig_test` is made there), else on SQLite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${DATABASE_URL:-}" ]; then
  if url=$(.venv/bin/python scripts/testdb.py); then
    export DATABASE_URL="$url"
  fi
fi
if [ -n "${DATABASE_URL:-}" ]; then
  echo "coopgig tests: running on PostgreSQL (${DATABASE_URL})"
else
  echo "coopgig tests: no PostgreSQL found, running on a temporary SQLite file"
fi
exec .venv/bin/python -m pytest "$@"
