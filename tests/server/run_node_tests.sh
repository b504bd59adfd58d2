#!/usr/bin/env bash
# Runs the official-SDK tests (tests/server/*.test.mjs, node:test) against `pensieve serve`.
#   tests/server/run_node_tests.sh PENSIEVE_BIN MODEL_DIR
# Installs the pinned SDKs (package-lock.json) into tests/server/node_modules with `npm ci` when
# they are missing or the lock file changed. Needs node >= 20 and npm (the npm registry, once).
set -euo pipefail
bin=$(realpath "$1")
model=$(realpath "$2")
cd "$(dirname "$0")"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run_node_tests: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
stamp=node_modules/.pensieve-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
# One file at a time: each starts its own server, and the machine may have 2 cores.
PENSIEVE_BIN="$bin" PENSIEVE_TEST_MODEL="$model" exec node --test --test-concurrency=1 ./*.test.mjs
