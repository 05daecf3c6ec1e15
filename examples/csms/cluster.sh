#!/usr/bin/env bash
# Starts N csms nodes of one cluster on this machine, against the local
# PostgreSQL and NATS (with JetStream), each on its own ports:
#   node i: OCPP 9000+i-1, public HTTP 8080+2(i-1), admin 8081+2(i-1)
# and waits; Ctrl-C (or SIGTERM) stops them all. Exits non-zero if a node
# does not start (its log says why).
#
#   examples/csms/cluster.sh 3
#
# Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/csms_cluster,
# created when missing), CSMS_CLUSTER (default nats://127.0.0.1:4222),
# CSMS_CLUSTER_NAME (default local), CSMS_API_KEY (default a lab key, printed),
# CSMS_BIN (default: built with cargo build --release -p csms),
# CLUSTER_DIR (data directories and logs, default ./cluster-data).
set -euo pipefail

n=${1:-}
if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N   (N nodes, 1 or more)" >&2
    exit 2
fi
db=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/csms_cluster}
nats=${CSMS_CLUSTER:-nats://127.0.0.1:4222}
name=${CSMS_CLUSTER_NAME:-local}
key=${CSMS_API_KEY:-cluster-lab-api-key-0001}
dir=${CLUSTER_DIR:-./cluster-data}

if [[ -z ${CSMS_BIN:-} ]]; then
    cargo build --release -p csms >&2
    CSMS_BIN="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}/release/csms"
fi
# the database, when it is not there yet (psql on PATH)
if command -v psql >/dev/null; then
    base=${db%/*}
    dbname=${db##*/}
    dbname=${dbname%%\?*}
    if ! psql "$db" -c 'select 1' >/dev/null 2>&1; then
        psql "$base/postgres" -c "CREATE DATABASE \"$dbname\"" >/dev/null
    fi
fi
mkdir -p "$dir"

pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

for i in $(seq 1 "$n"); do
    ocpp=$((9000 + i - 1))
    http=$((8080 + 2 * (i - 1)))
    admin=$((8081 + 2 * (i - 1)))
    out="$dir/n$i.out"
    : >"$out"
    DATABASE_URL=$db CSMS_API_KEY=$key "$CSMS_BIN" \
        --cluster "$nats" --cluster-name "$name" --node-id "n$i" \
        --data-dir "$dir/n$i" --ocpp-port "$ocpp" --http-port "$http" --admin-port "$admin" \
        >"$out" 2>"$dir/n$i.log" &
    pids+=($!)
    # one at a time: the first node creates the schema
    for _ in $(seq 1 300); do
        grep -q '"event":"listening"' "$out" && break
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            echo "node n$i did not start: $(tail -n 3 "$dir/n$i.log")" >&2
            exit 1
        fi
        sleep 0.2
    done
    if ! grep -q '"event":"listening"' "$out"; then
        echo "node n$i did not start in 60 s: $(tail -n 3 "$dir/n$i.log")" >&2
        exit 1
    fi
    echo "n$i: stations ws://127.0.0.1:$ocpp/ocpp/{identity}, console http://127.0.0.1:$admin/?key=$key"
done
echo "$n nodes of cluster $name on $db and $nats; Ctrl-C stops them"
wait -n "${pids[@]}"
echo "a node stopped; stopping the others" >&2
exit 1
