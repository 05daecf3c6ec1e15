#!/usr/bin/env bash
# Capacity runs of BENCHMARKS.md: saturation against a bare echo server, our
# csms_minimal (tungstenite and yawc paths) and the Python `ocpp` CSMS, in one
# run, then 19,000 stations at 1 msg/10 s with server RSS.
# usage: benches/capacity.sh   (needs the venv the interop tests create)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p evproto -p evproto --example echo_server
cargo build --release -q -p evproto-ocpp-server --example csms_minimal
T=${CARGO_TARGET_DIR:-target}/release
PY=${EVPROTO_CACHE:-$HOME/.cache/evproto}/venv-ocpp/bin/python
cleanup() { pkill -f "echo_server 1970" || true; pkill -f "csms_minimal --port 1970" || true; pkill -f "ocpp_csms.py --port 1970" || true; }
trap cleanup EXIT
"$T/examples/echo_server" 19701 >/dev/null 2>&1 &
"$T/examples/csms_minimal" --port 19702 --unsecured --quiet --no-deflate >/dev/null 2>&1 &
"$T/examples/csms_minimal" --port 19703 --unsecured --quiet >/dev/null 2>&1 &
"$PY" tests/interop/python/ocpp_csms.py --port 19704 --version 2.0.1 --forever >/dev/null 2>&1 &
sleep 2
for target in 19701:echo 19702:csms_minimal 19703:csms_minimal-deflate 19704:python-ocpp; do
  port=${target%%:*}; name=${target#*:}
  printf '%-24s ' "$name"
  "$T/evproto" load --url "ws://127.0.0.1:$port/ocpp/" --prefix "S$port-" --stations 1000 --duration 10 --ramp 2000 --saturate 2>/dev/null | tail -1 || [ $? -eq 1 ]
done
# the same saturation with the transactions mix (every message a durable write)
for target in 19701:echo 19702:csms_minimal; do
  port=${target%%:*}; name=${target#*:}
  printf '%-24s ' "$name transactions"
  "$T/evproto" load --url "ws://127.0.0.1:$port/ocpp/" --prefix "T$port-" --stations 1000 --duration 10 --ramp 2000 --saturate --mix transactions 2>/dev/null | tail -1 || [ $? -eq 1 ]
done
cleanup
sleep 1
# 19,000 stations at 1 msg/10 s on fresh servers: RSS per connection = (mid-run RSS - start RSS) / 19000
for mode in --no-deflate ""; do
  "$T/examples/csms_minimal" --port 19705 --unsecured --quiet $mode >/dev/null 2>&1 &
  sleep 1
  pid=$(pgrep -f "csms_minimal --port 19705")
  base=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  printf 'steady 19000 [%s] (start RSS %s KiB): ' "${mode:-deflate}" "$base"
  "$T/evproto" load --url "ws://127.0.0.1:19705/ocpp/" --prefix I --stations 19000 --duration 30 --ramp 2000 --rate 0.1 --pid "$pid" 2>/dev/null | tail -1 || [ $? -eq 1 ]
  kill "$pid"
  sleep 2
done
# compressed connections: 5,000 idle stations from evproto simulate (ocpp-client offers permessage-deflate)
"$T/examples/csms_minimal" --port 19706 --unsecured --quiet >/dev/null 2>&1 &
sleep 1
pid=$(pgrep -f "csms_minimal --port 19706")
base=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
"$T/evproto" simulate --url ws://127.0.0.1:19706/ocpp/ --stations 5000 --ramp 1000 --duration 25 --idle 100000 --faults-per-hour 0 --drops-per-hour 0 >/tmp/evproto-sim.json 2>/dev/null &
sleep 22
now=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "compressed idle 5000: start $base KiB, now $now KiB, per connection $(( (now - base) / 5000 )) KiB"
wait
tail -1 /tmp/evproto-sim.json
kill "$pid"
