#!/usr/bin/env bash
# The reference CSMS against the bare echo server, side by side in one run
# (BENCHMARKS.md, "The reference CSMS"): saturation with the idle mix and
# with the transactions mix, on SQLite and on PostgreSQL; then 19,000
# stations at 1 msg/10 s with their boot storm, with RSS.
# usage: benches/csms.sh [STATIONS]   (PostgreSQL on 127.0.0.1:5432, trust auth;
#        set PG=0 to skip it, STEADY=0 to skip the 19,000-station run)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p csms -p evproto --bins --example echo_server
T=${CARGO_TARGET_DIR:-target}/release
KEY=bench-key-0123456789abcdef
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# csms NAME OCPP_PORT HTTP_PORT [DATABASE_URL]: a fresh CSMS that accepts LOADTAG
# (its operator API on the admin port HTTP_PORT + 100)
csms() {
  local name=$1 port=$2 http=$3 db=${4:-} admin=$(($3 + 100))
  mkdir -p "$WORK/$name"
  "$T/csms" --bind 127.0.0.1 --ocpp-port "$port" --http-port "$http" --admin-port "$admin" --data-dir "$WORK/$name" \
    ${db:+--database-url "$db"} --api-key "$KEY" --security-profile 0 --unknown-stations accept \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$admin/api/tokens" -H "Authorization: Bearer $KEY" && break
    sleep 0.2
  done
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$admin/api/tokens" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{"id_token":"LOADTAG","type":"ISO14443","status":"Accepted","allow_concurrent":true}'
}

"$T/examples/echo_server" 19801 >/dev/null 2>&1 &
PIDS+=($!)
csms sqlite 19802 19812
SERVERS="19801:echo 19802:csms-sqlite"
if [ "${PG:-1}" != 0 ]; then
  DB=evproto_bench_$$
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
  trap 'cleanup; psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" postgres' EXIT
  csms postgres 19803 19813 "postgres://postgres@127.0.0.1:5432/$DB"
  SERVERS="$SERVERS 19803:csms-postgres"
fi
sleep 1
for mix in idle transactions; do
  for target in $SERVERS; do
    port=${target%%:*}; name=${target#*:}
    printf '%-14s %-13s ' "$name" "$mix"
    "$T/evproto" load --url "ws://127.0.0.1:$port/ocpp/" --prefix "B$mix$port-" --stations "$N" \
      --duration 10 --ramp 2000 --saturate --mix "$mix" 2>/dev/null | tail -1 || [ $? -eq 1 ]
  done
done
if [ "${STEADY:-1}" != 0 ]; then
  for target in $SERVERS; do
    port=${target%%:*}; name=${target#*:}
    [ "$name" = echo ] && continue
    pid=$(pgrep -f "csms --bind 127.0.0.1 --ocpp-port $port")
    base=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    printf '%-14s steady 19000 (start RSS %s KiB) ' "$name" "$base"
    "$T/evproto" load --url "ws://127.0.0.1:$port/ocpp/" --prefix "S$port-" --stations 19000 \
      --duration 30 --ramp 2000 --rate 0.1 --pid "$pid" 2>/dev/null | tail -1 || [ $? -eq 1 ]
  done
fi
