#!/usr/bin/env bash
# Smart charging's site limit change pushed to every station (BENCHMARKS.md,
# "A site limit change through smart charging"): a release `csms` on its
# embedded store, STATIONS (default 1,000) simulated OCPP 2.0.1 stations of
# one site (`evproto simulate`, one connector each, one session each for the
# whole run, no faults, no drops), smart charging off while they ramp up.
# Once every session is active, `PUT /api/site/limits` sets the site's
# limits (LIMIT_W, default 5 MW, PHASE_A per phase, EVSE_W per EVSE: every
# station's profiles are new: its TxDefaultProfile, its session's
# TxProfile, a ChargingStationMaxProfile when the site holds it back, and a
# GetCompositeSchedule check), then, after QUIET s, a second PUT halves the
# site limit (the TxProfiles, maxima and defaults change). Measured from the
# CSMS's own log lines (`--log-format json`): per station, the time from
# the request to the CSMS's log line of that station's accepted TxProfile
# ("smart: share", written when the answer came back), p50/p99/max, the
# total wall time, and the CSMS's own figures for the recomputation
# ("smart: pushed": plan_ms = store reads + allocation, total_ms = with
# every push and check, at most PUSH_CONCURRENCY = 64 stations at a time).
# usage: benches/smart.sh [STATIONS]
#   SKIP_BUILD=1 reuses the release build in ${CARGO_TARGET_DIR:-target};
#   RAMP (stations started per second, default 50), QUIET (default 5),
#   STEADY_TIMEOUT (s, default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
RAMP=${RAMP:-50}
LIMIT_W=${LIMIT_W:-5000000}
PHASE_A=${PHASE_A:-5000}
EVSE_W=${EVSE_W:-11000}
QUIET=${QUIET:-5}
STEADY_TIMEOUT=${STEADY_TIMEOUT:-900}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p csms -p evproto --bins
T=${CARGO_TARGET_DIR:-target}/release
KEY=bench-key-0123456789abcdef
ADMIN=19983
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

"$T/csms" --bind 127.0.0.1 --ocpp-port 19981 --http-port 19982 --admin-port "$ADMIN" --data-dir "$WORK/csms" \
  --api-key "$KEY" --security-profile 0 --unknown-stations accept --log-format json \
  >"$WORK/csms.out" 2>"$WORK/csms.log" &
CSMS=$!
PIDS+=($CSMS)
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/api/tokens" -H "Authorization: Bearer $KEY" && break
  kill -0 "$CSMS" || { echo "csms did not start: $(tail -n 3 "$WORK/csms.log")" >&2; exit 1; }
  sleep 0.2
done
curl -sf -o /dev/null -X POST "http://127.0.0.1:$ADMIN/api/tokens" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"id_token":"SITETAG","type":"ISO14443","status":"Accepted","allow_concurrent":true}'

"$T/evproto" simulate --url ws://127.0.0.1:19981/ocpp/ --prefix SMART- --stations "$N" --ramp "$RAMP" \
  --duration 86400 --ocpp 2.0.1 --connectors 1 --idle 1-2 --session 86400 --faults-per-hour 0 \
  --drops-per-hour 0 --tokens SITETAG >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
echo "$N stations (2.0.1, one connector), ramp $RAMP/s; $(nproc) cores; load average $(loadavg)"

python3 - "$WORK/csms.log" "$N" "$QUIET" "$STEADY_TIMEOUT" "http://127.0.0.1:$ADMIN" "$KEY" "$LIMIT_W" "$PHASE_A" "$EVSE_W" <<'PY'
import json, sys, time, urllib.request
from datetime import datetime
log, n, quiet, steady_timeout, base, key = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
limit_w, phase_a, evse_w = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])

def lines(since=0):
    with open(log, 'rb') as f:
        f.seek(since)
        data = f.read()
    end = data.rfind(b'\n') + 1
    out = []
    for raw in data[:end].splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            pass
    return out, since + end

def ts(line):
    return datetime.fromisoformat(line['timestamp'].replace('Z', '+00:00')).timestamp()

def msg(line):
    return line.get('fields', {}).get('message')

def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode(), method=method,
                                 headers={'Authorization': f'Bearer {key}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req) as r:
        return r.status, json.loads(r.read() or b'null')

start = time.time()
while True:
    _, page = call('GET', '/api/sessions?status=Active&limit=1')
    active = page.get('total', 0)
    if active >= n:
        break
    if time.time() - start > steady_timeout:
        print(f"only {active} of {n} sessions active after {steady_timeout:.0f} s; measuring with those")
        break
    time.sleep(1)
time.sleep(quiet)
print(f"{active} sessions active after {time.time() - start:.0f} s")

offset = 0
def measure(label, body):
    global offset
    _, offset = lines(offset)
    t0 = time.time()
    status, _ = call('PUT', '/api/site/limits', body)
    t_answer = time.time() - t0
    pushed, shares, give_up = None, [], time.time() + 600
    while pushed is None and time.time() < give_up:
        new, offset = lines(offset)
        for l in new:
            if ts(l) < t0:
                continue
            if msg(l) == 'smart: share':
                shares.append(l)
            elif msg(l) == 'smart: pushed' and int(l['fields']['stations']) > 0:
                pushed = l
                break
        time.sleep(0.2)
    if pushed is None:
        print(f"{label}: no recomputation within 600 s ({len(shares)} shares seen)")
        sys.exit(1)
    ok = [l for l in shares if l['fields'].get('status') == 'Accepted']
    lat = sorted((ts(l) - t0) * 1000 for l in ok)
    statuses = {}
    for l in shares:
        statuses[l['fields']['status']] = statuses.get(l['fields']['status'], 0) + 1
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float('nan')
    f = pushed['fields']
    print(f"{label} (PUT {status} in {t_answer * 1000:.0f} ms): {len(shares)} TxProfiles to {len({l['fields']['station'] for l in shares})} stations, answers {json.dumps(statuses)}")
    print(f"  per station, request to accepted TxProfile logged: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {lat[-1] if lat else float('nan'):.0f} ms")
    print(f"  the CSMS's recomputation: plan_ms {f['plan_ms']} (store reads + allocation), total_ms {f['total_ms']} "
          f"(every push and composite check: {f['stations']} stations, {f['checked']} EVSEs checked, {f['mismatched']} mismatched, missed {f['missed']})")

measure(f"limits set ({limit_w} W, {phase_a} A per phase, {evse_w} W per EVSE; every profile new)",
        {"limit_w": limit_w, "phase_limit_a": phase_a, "evse_max_w": evse_w})
time.sleep(quiet)
measure(f"site limit halved ({limit_w // 2} W)", {"limit_w": limit_w // 2, "phase_limit_a": phase_a, "evse_max_w": evse_w})
PY
echo "load average $(loadavg); csms RSS $(awk '/VmRSS/ {print $2}' "/proc/$CSMS/status") KiB"
