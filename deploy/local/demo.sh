#!/usr/bin/env bash
# `make demo`: run the story against the running marketplace, starting it first
# (and stopping it afterwards) when `make run` is not already up.
#
# Where the marketplace is: SLUICE_ACCESS_URL, SLUICE_CATALOG_URL, SLUICE_ORDERS_URL,
# SLUICE_AUDIT_URL and SLUICE_DATASERVICE_URL when set; else the cluster of `make cluster`
# while it runs (it writes var/cluster/demo.env); else `make run`'s ports.
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SLUICE_ACCESS_URL:-}" ] && [ -f var/cluster/demo.env ]; then
  set -a; source var/cluster/demo.env; set +a
  echo "==> using the cluster of \`make cluster\` (var/cluster/demo.env): access at $SLUICE_ACCESS_URL"
  if ! curl -fsS -o /dev/null "$SLUICE_ACCESS_URL/healthz" 2>/dev/null; then
    echo "the cluster is not answering at $SLUICE_ACCESS_URL: start it with \`make cluster\`," \
         "or delete var/cluster/demo.env to use \`make run\`" >&2
    exit 2
  fi
elif [ -n "${SLUICE_ACCESS_URL:-}" ]; then
  if ! curl -fsS -o /dev/null "$SLUICE_ACCESS_URL/healthz" 2>/dev/null; then
    echo "nothing answers at SLUICE_ACCESS_URL=$SLUICE_ACCESS_URL" >&2
    exit 2
  fi
fi
started=""
if ! curl -fsS -o /dev/null "${SLUICE_ACCESS_URL:-http://127.0.0.1:8003}/healthz" 2>/dev/null; then
  echo "==> the marketplace is not running; starting it (log: var/run.log)"
  mkdir -p var
  setsid make run > var/run.log 2>&1 &
  started=$!
  trap 'kill -- -"$started" 2>/dev/null; wait "$started" 2>/dev/null' EXIT
  for port in 8001 8002 8003 8004 8010 8420; do
    for _ in $(seq 1 180); do
      curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
      [ "$port" = 8420 ] && curl -fsS -o /dev/null -u sk_test: "http://127.0.0.1:8420/v1/customers" 2>/dev/null && break
      sleep 1
    done
  done
  sleep 2  # let the webhook registration and first revocation polls happen
fi
.venv/bin/python -m sluice.demo "$@"
