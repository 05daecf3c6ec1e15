#!/usr/bin/env bash
# The CSMS as a cluster (BENCHMARKS.md, "The CSMS as a cluster"): three
# `csms` nodes on this machine, one PostgreSQL database, a nats-server -js of
# the run's own.
#  1. steady: STATIONS in all (default 51,000), one `evproto load` process
#     per node (each over 16 loopback source addresses), 1 message per
#     station per 10 s (idle mix) for DURATION s after the ramp: per node the
#     connections, p99, errors and RSS, its CPU seconds over the phase and
#     its relay's counts (live events published, taken from the others),
#     the cluster's own gauges, and the load average (the machine is shared);
#  2. saturation side by side in one run, on the same nodes afterwards:
#     1, 2 and 3 nodes each under `evproto load --saturate` (SAT stations
#     per node, default 1,000, idle mix, 10 s), total msg/s.
# usage: benches/cluster.sh [STATIONS]
#   SKIP_BUILD=1 reuses the release build in ${CARGO_TARGET_DIR:-target};
#   DURATION (default 60), RAMP (connections per second per load process,
#   default 500), SAT, LEASE (--cluster-lease: the jobs' leases and each
#   node's liveness, renewed every third of it; a station's presence entry
#   is written once per connection; default 30), STEADY=0 / SATURATE=0 skip
#   a part.
#   Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and nats-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-51000}
DURATION=${DURATION:-60}
RAMP=${RAMP:-500}
SAT=${SAT:-1000}
LEASE=${LEASE:-30}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p csms -p evproto --bins
T=${CARGO_TARGET_DIR:-target}/release
KEY=bench-key-0123456789abcdef
WORK=$(mktemp -d)
DB=evproto_cluster_bench_$$
NATS_PORT=${NATS_PORT:-14222}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" postgres || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# each node and each load process holds a third of the connections
ulimit -n "$(ulimit -Hn)"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# a process's user + system CPU, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A CPU0

nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $DB" postgres
declare -A NODE_PID
# node I: OCPP 19920+I, public HTTP 19930+I, admin 19940+I; one at a time
# (the first creates the schema)
for i in 1 2 3; do
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" "$T/csms" --bind 127.0.0.1 \
    --ocpp-port $((19920 + i)) --http-port $((19930 + i)) --admin-port $((19940 + i)) \
    --data-dir "$WORK/n$i" --api-key "$KEY" --security-profile 0 --unknown-stations accept \
    --cluster "nats://127.0.0.1:$NATS_PORT" --cluster-name bench --node-id "n$i" --cluster-lease "$LEASE" \
    >"$WORK/n$i.out" 2>"$WORK/n$i.log" &
  NODE_PID[$i]=$!
  PIDS+=($!)
  for _ in $(seq 300); do
    grep -q '"event":"listening"' "$WORK/n$i.out" && break
    kill -0 "${NODE_PID[$i]}" || { echo "node n$i did not start: $(tail -n 3 "$WORK/n$i.log")" >&2; exit 1; }
    sleep 0.2
  done
done
echo "3 nodes up (lease $LEASE s); $(nproc) cores; load average $(loadavg)"
metrics() { curl -sf "http://127.0.0.1:$((19940 + $1))/metrics" -H "Authorization: Bearer $KEY"; }
summary() { # FILE: one line of the load report's JSON
  python3 -c 'import json,sys
r=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
l=r["latency_ms"]
a=r.get("after_ramp_latency_ms") or {}
print("connected %d/%d, %.0f msg/s, p50 %.1f ms, p99 %.1f ms, max %.0f ms, errors %d %s%s%s" % (r["connections_ok"], r["stations"], r["throughput_msg_s"], l["p50"], l["p99"], l["max"], r["errors"] + r["connections_failed"], json.dumps(r["errors_by_kind"]) if r["errors"] else "", (", node RSS %.1f MB mid-run" % (r["server_rss_kib_mid_run"] / 1024)) if "server_rss_kib_mid_run" in r else "", ("; after the ramp: %d answers, p50 %.1f ms, p95 %.1f ms, p99 %.1f ms" % (a["count"], a["p50"], a["p95"], a["p99"])) if a else ""))' "$1"
}

if [ "${STEADY:-1}" != 0 ]; then
  per=$((N / 3))
  echo "steady: $((per * 3)) stations, $per per node, 1 msg/station/10 s, ${DURATION} s after a ramp of $RAMP/s per node"
  for i in 1 2 3; do CPU0[$i]=$(cpu_ticks "${NODE_PID[$i]}"); done
  for i in 1 2 3; do
    "$T/evproto" load --url "ws://127.0.0.1:$((19920 + i))/ocpp/" --prefix "C$i-" --stations "$per" \
      --duration "$DURATION" --ramp "$RAMP" --rate 0.1 --pid "${NODE_PID[$i]}" \
      >"$WORK/steady$i.json" 2>"$WORK/steady$i.err" &
    LOADS[$i]=$!
  done
  # the cluster's view in the middle of the steady phase
  sleep $((per / RAMP + DURATION / 2))
  echo "mid-run load average $(loadavg)"
  # who takes the CPU in the steady phase (5 s sample)
  top -b -n 2 -d 5 -w 200 | awk '/^top -/{n++} n==2' | sed -n '7,22p' || true
  metrics 1 | grep -E '^csms_cluster_(nodes|node_stations|job_holder)' || true
  for i in 1 2 3; do wait "${LOADS[$i]}" || true; done
  for i in 1 2 3; do echo "node n$i: $(summary "$WORK/steady$i.json")"; done
  # each node's CPU over the whole steady phase (ramp included), and what
  # its relay published and took of the other nodes' live events
  tick=$(getconf CLK_TCK)
  for i in 1 2 3; do
    used=$(( $(cpu_ticks "${NODE_PID[$i]}") - CPU0[$i] ))
    echo "node n$i: CPU $(python3 -c "print(round($used / $tick, 1))") s; $( (metrics "$i" | grep -E '^csms_cluster_events_' || true) | sed -E 's/\{[^}]*\}//' | tr '\n' ' ')"
  done
  # per action (BootNotification apart: the p99 above leaves it out)
  for i in 1 2 3; do echo "node n$i:"; grep -E '^(action|[A-Z][A-Za-z]+ +[0-9])' "$WORK/steady$i.err" | sed 's/^/  /' || true; done
  echo "after the steady phase: load average $(loadavg)"
fi

if [ "${SATURATE:-1}" != 0 ]; then
  for k in 1 2 3; do
    for i in $(seq 1 "$k"); do
      "$T/evproto" load --url "ws://127.0.0.1:$((19920 + i))/ocpp/" --prefix "X$k-$i-" --stations "$SAT" \
        --duration 10 --ramp 2000 --saturate >"$WORK/sat$k-$i.json" 2>/dev/null &
      SATS[$i]=$!
    done
    for i in $(seq 1 "$k"); do wait "${SATS[$i]}" || true; done
    total=$(python3 -c 'import json,sys
print(round(sum(json.loads(open(f).read().strip().splitlines()[-1])["throughput_msg_s"] for f in sys.argv[1:])))' $(for i in $(seq 1 "$k"); do echo "$WORK/sat$k-$i.json"; done))
    echo "saturation, $k node(s) x $SAT stations: $total msg/s in all; load average $(loadavg)"
    for i in $(seq 1 "$k"); do echo "  n$i: $(summary "$WORK/sat$k-$i.json")"; done
  done
fi
