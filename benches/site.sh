#!/usr/bin/env bash
# A site limit change pushed to every station (BENCHMARKS.md, "A site limit
# change"): a release `csms` on its embedded store, STATIONS (default 1,000)
# simulated 2.1 stations of one site (`evproto simulate`, one connector each,
# every car bidirectional, one session each for the whole run, no faults, no
# drops). Once steady (every session planned and sent its first setpoint, and
# no setpoint for QUIET s), `POST /api/grid/events` cuts the site's import
# limit to LIMIT_W (default 0 W) for an hour from now: the CSMS plans the
# site again and sends each session whose setpoint changed its new one
# (`UpdateDynamicSchedule` on its V2X profile); then the event is deleted
# (`DELETE /api/grid/events/{id}`) and the same is measured again. Measured from the CSMS's own
# log lines (`--log-format json`): per station, the time from the request
# to the CSMS's log line of that station's answer ("v2x: setpoint", written
# after the answer came back and was stored), p50/p99/max, the total wall
# time, and the CSMS's own figures for the replan ("v2x: replanned":
# plan_ms = store reads + plan, total_ms = with every push).
# usage: benches/site.sh [STATIONS]
#   SKIP_BUILD=1 reuses the release build in ${CARGO_TARGET_DIR:-target};
#   RAMP (stations started per second, default 50), LIMIT_W, QUIET (default
#   5), STEADY_TIMEOUT (s, default 900: how long to wait for the steady state
#   before measuring with what was reached, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
RAMP=${RAMP:-50}
LIMIT_W=${LIMIT_W:-0}
QUIET=${QUIET:-5}
STEADY_TIMEOUT=${STEADY_TIMEOUT:-900}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p csms -p evproto --bins
T=${CARGO_TARGET_DIR:-target}/release
KEY=bench-key-0123456789abcdef
ADMIN=19973
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

"$T/csms" --bind 127.0.0.1 --ocpp-port 19971 --http-port 19972 --admin-port "$ADMIN" --data-dir "$WORK/csms" \
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

"$T/evproto" simulate --url ws://127.0.0.1:19971/ocpp/ --prefix SITE- --stations "$N" --ramp "$RAMP" \
  --duration 86400 --ocpp 2.1 --connectors 1 --idle 1-2 --session 86400 --faults-per-hour 0 \
  --drops-per-hour 0 --v2x 1 --tokens SITETAG >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
echo "$N stations (2.1, one connector, bidirectional cars), ramp $RAMP/s; $(nproc) cores; load average $(loadavg)"

python3 - "$WORK/csms.log" "$N" "$QUIET" "$STEADY_TIMEOUT" "http://127.0.0.1:$ADMIN/api/grid/events" "$KEY" "$LIMIT_W" <<'EOF'
import json, sys, time, urllib.request
from datetime import datetime, timedelta, timezone
log, n, quiet, steady_timeout, url, key, limit_w = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]

def lines(since=0):
    """The CSMS's JSON log lines from byte `since`; the next offset."""
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

# steady: every session has had its first setpoint answered, then QUIET s
# without a setpoint
planned, offset, last, start = set(), 0, time.time(), time.time()
while True:
    new, offset = lines(offset)
    for l in new:
        if msg(l) == 'v2x: setpoint':
            last = time.time()
            if l['fields'].get('status') == 'Accepted':
                planned.add(l['fields']['session'])
    if len(planned) >= n and time.time() - last >= quiet:
        break
    if time.time() - start > steady_timeout:
        print(f"not steady after {steady_timeout:.0f} s: {len(planned)} of {n} sessions had their first setpoint accepted; measuring with those")
        break
    time.sleep(0.5)
print(f"steady after {time.time() - start:.0f} s: {len(planned)} V2X sessions with an accepted setpoint")

def measure(label, method, path, body):
    """Sends the request and reports the replan it causes."""
    global offset
    req = urllib.request.Request(url + path, data=body and json.dumps(body).encode(), method=method,
                                 headers={'Authorization': f'Bearer {key}', 'Content-Type': 'application/json'})
    _, offset = lines(offset)
    t0 = time.time()
    with urllib.request.urlopen(req) as r:
        status = r.status
    t_answer = time.time() - t0
    # the replan the request caused: the first "v2x: replanned" after it that sent something
    replan, sent, give_up = None, [], time.time() + 600
    while replan is None and time.time() < give_up:
        new, offset = lines(offset)
        for l in new:
            if ts(l) < t0:
                continue
            if msg(l) == 'v2x: setpoint':
                sent.append(l)
            elif msg(l) == 'v2x: replanned' and int(l['fields']['sent']) > 0:
                replan = l
                break
        time.sleep(0.2)
    if replan is None:
        print(f"{label}: no replan with a setpoint sent within 600 s ({len(sent)} setpoints seen)")
        sys.exit(1)
    lat = sorted((ts(l) - t0) * 1000 for l in sent)
    stations = {l['fields']['station'] for l in sent}
    statuses = {}
    for l in sent:
        statuses[l['fields']['status']] = statuses.get(l['fields']['status'], 0) + 1
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    f = replan['fields']
    print(f"{label} ({method} {status} in {t_answer * 1000:.0f} ms): {len(sent)} setpoints to {len(stations)} stations "
          f"of {f['sessions']} active V2X sessions, answers {json.dumps(statuses)}")
    print(f"  per station, request to answer stored: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {lat[-1]:.0f} ms; "
          f"total wall time {lat[-1] / 1000:.2f} s")
    print(f"  the CSMS's replan: plan_ms {f['plan_ms']} (store reads + plan), total_ms {f['total_ms']} (with every push)")

now = datetime.now(timezone.utc)
event = {"id": "site-bench", "start": (now - timedelta(minutes=1)).isoformat(),
         "end": (now + timedelta(hours=1)).isoformat(), "import_limit_w": int(limit_w)}
measure(f"import limit cut to {limit_w} W", 'POST', '', event)
time.sleep(quiet)
measure("limit lifted (event deleted)", 'DELETE', '/site-bench', None)
EOF
echo "load average $(loadavg); csms RSS $(awk '/VmRSS/ {print $2}' "/proc/$CSMS/status") KiB"
