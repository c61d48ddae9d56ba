#!/usr/bin/env bash
# Set everything up, seed the demo cooperative and serve the API on SQLite (./coopgig.db).
#   bash scripts/demo.sh            payments through the demo gateway (moves no money, no processor)
#   bash scripts/demo.sh --stripe   payments through the Stripe code path, against a local
#                                   Stripe-compatible server (localstripe) started on a free port
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--stripe" ]; then
  port=$(.venv/bin/python -c "from tests.stripe_harness import free_port; print(free_port())")
  .venv/bin/python -m tests.stripe_harness --port "$port" > localstripe.log 2>&1 &
  stripe_pid=$!
  trap 'kill $stripe_pid 2>/dev/null || true' EXIT
  export STRIPE_API_KEY=sk_test_coopgig_demo STRIPE_API_BASE="http://127.0.0.1:$port"
  export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_coopgig_demo}
  for _ in $(seq 1 50); do
    curl -fsS -o /dev/null -u "$STRIPE_API_KEY:" "$STRIPE_API_BASE/v1/customers" 2>/dev/null && break
    sleep 0.2
  done
  echo "localstripe on $STRIPE_API_BASE (log: localstripe.log); bookings wait for payment confirmation"
fi
.venv/bin/coopgig demo
echo "Serving on http://127.0.0.1:${PORT:-8000} (API docs at /docs). Ctrl-C to stop."
.venv/bin/coopgig serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
