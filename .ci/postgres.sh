#!/usr/bin/env bash
# Starts a throwaway Postgres cluster (Debian's server binaries) on a free port and
# prints its URL; the cluster stops when the process with pid $1 exits. Run as root,
# the server runs as the postgres user (Postgres refuses root).
#   url=$(bash .ci/postgres.sh $$)
set -euo pipefail
owner=${1:?pid whose exit stops the cluster}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
base=$(mktemp -d)
chmod 755 "$base"
data="$base/data"
mkdir "$data"
run=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$data"
  run=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${run[@]}" "$bin/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null
"${run[@]}" "$bin/pg_ctl" -D "$data" -w -l "$data/server.log" \
  -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null
( while kill -0 "$owner" 2>/dev/null; do sleep 1; done
  "${run[@]}" "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1; rm -rf "$base" ) \
  >/dev/null 2>&1 </dev/null &
echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
