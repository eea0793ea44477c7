#!/usr/bin/env bash
# Checks the running server against its own OpenAPI document with schemathesis: every
# response documented, of the documented schema and content type, no 5xx. Bounded:
# a fixed number of examples per operation and a deterministic seed. With
# LEADSTREAM_DATABASE_URL set, the server and the admin commands keep all their state
# (credentials, endpoints, deliveries, campaigns, domain records) in that Postgres database.
#   bash .ci/schemathesis.sh [path/to/leadstream]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/leadstream}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --data-dir "$dir" org create --id 42 --name schemathesis >/dev/null
key=$("$bin" --data-dir "$dir" api-key create --org 42 | tail -n1)
"$bin" --data-dir "$dir" serve --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks all --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" --seed 42 --no-color
