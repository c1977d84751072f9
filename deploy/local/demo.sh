#!/usr/bin/env bash
# `make demo`: run the story against the running marketplace. With the default local URLs
# it starts `make run` first (and stops it afterwards) when nothing answers; with
# SLUICE_ACCESS_URL etc. set (a cluster, a load balancer) it only runs the story there.
# While `make cluster` runs, its var/cluster/demo.env sets them (the balancer's addresses).
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${SLUICE_ACCESS_URL:-}" ] && [ -f var/cluster/demo.env ]; then
  set -a; source var/cluster/demo.env; set +a
  echo "==> using the cluster of \`make cluster\` (var/cluster/demo.env; delete it to use \`make run\`)"
fi
access="${SLUICE_ACCESS_URL:-http://127.0.0.1:8003}"
started=""
if ! curl -fsS -o /dev/null "$access/healthz" 2>/dev/null; then
  if [ -n "${SLUICE_ACCESS_URL:-}" ]; then
    echo "the marketplace at $access (SLUICE_ACCESS_URL) does not answer; start it first" >&2
    exit 2
  fi
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
