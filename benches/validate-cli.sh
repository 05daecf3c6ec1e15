#!/usr/bin/env bash
# Throughput of `evproto ocpp validate` on 200,000-line inputs.
# usage: benches/validate-cli.sh [lines]   (prints MB/s per input; writes inputs under target/bench-validate/)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-200000}
dir=target/bench-validate
mkdir -p "$dir"
cargo build --release -q -p evproto
bin=${CARGO_TARGET_DIR:-target}/release/evproto
python3 - "$dir" "$lines" <<'PY'
import json, sys, random
out, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
def ts(i): return "2024-05-01T%02d:%02d:%02dZ" % (i // 3600 % 24, i // 60 % 60, i % 60)
with open(f"{out}/v16-metervalues.jsonl", "w") as f:
    for i in range(n):
        sv = [
            {"value": "%.1f" % (12345.6 + i), "context": "Sample.Periodic", "format": "Raw", "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": str(7000 + rnd.randrange(400)), "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
        ] + [{"value": "%.1f" % (16 + rnd.random()), "context": "Sample.Periodic", "measurand": "Current.Import", "phase": p, "unit": "A"} for p in ("L1", "L2", "L3")] \
          + [{"value": "%.1f" % (229 + 2 * rnd.random()), "context": "Sample.Periodic", "measurand": "Voltage", "phase": p, "unit": "V"} for p in ("L1-N", "L2-N", "L3-N")] \
          + [{"value": str(20 + i % 80), "context": "Sample.Periodic", "measurand": "SoC", "location": "EV", "unit": "Percent"},
             {"value": "%.1f" % (30 + rnd.random()), "context": "Sample.Periodic", "measurand": "Temperature", "location": "Body", "unit": "Celsius"}]
        f.write(json.dumps({"connectorId": 1 + i % 2, "transactionId": 100000 + i, "meterValue": [{"timestamp": ts(i), "sampledValue": sv}]}, separators=(",", ":")) + "\n")
with open(f"{out}/v201-transactionevent.jsonl", "w") as f:
    for i in range(n):
        f.write(json.dumps({"eventType": "Updated", "timestamp": ts(i), "triggerReason": "MeterValuePeriodic", "seqNo": i, "offline": False,
            "transactionInfo": {"transactionId": "tx-%08d" % (i // 50), "chargingState": "Charging"}, "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "04A2B3C4D5E6%02X" % (i % 256), "type": "ISO14443"},
            "meterValue": [{"timestamp": ts(i), "sampledValue": [
                {"value": round(12345.6 + i * 0.1, 1), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
                {"value": 7000 + rnd.randrange(400), "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
                {"value": round(16 + rnd.random(), 2), "context": "Sample.Periodic", "measurand": "Current.Import", "phase": "L1"},
                {"value": round(229 + 2 * rnd.random(), 2), "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N"}]}]},
            separators=(",", ":")) + "\n")
with open(f"{out}/v201-bootnotification.jsonl", "w") as f:
    reasons = ["PowerUp", "ApplicationReset", "FirmwareUpdate", "LocalReset", "RemoteReset", "Watchdog"]
    for i in range(n):
        f.write(json.dumps({"reason": reasons[i % len(reasons)], "chargingStation": {"serialNumber": "SN-%010d" % i, "model": "SingleSocketCharger",
            "modem": {"iccid": "89314404%012d" % i, "imsi": "3101501%08d" % i}, "vendorName": "VendorX", "firmwareVersion": "1.%d.%d" % (i % 10, i % 7)}},
            separators=(",", ":")) + "\n")
PY
run() {
  local file=$1; shift
  local bytes; bytes=$(stat -c %s "$file")
  local start end secs
  start=$(date +%s.%N)
  "$bin" ocpp validate "$@" < "$file" > "$dir/out.txt" || [ $? -eq 1 ]   # 1: some lines invalid
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc -l)
  local ok; ok=$(grep -c '^ok$' "$dir/out.txt" || true)
  printf '%-40s %8d lines %7.1f MB %6.3f s %8.1f MB/s  ok=%d\n' "$(basename "$file") $*" "$(wc -l < "$file")" "$(echo "$bytes/1000000" | bc -l)" "$secs" "$(echo "$bytes/1000000/$secs" | bc -l)" "$ok"
}
run "$dir/v16-metervalues.jsonl" --version 1.6 --action MeterValues --message request
run "$dir/v16-metervalues.jsonl" --version 1.6 --action MeterValues --message request --threads 1
run "$dir/v201-transactionevent.jsonl" --version 2.0.1 --action TransactionEvent --message request
run "$dir/v201-transactionevent.jsonl" --version 2.0.1 --action TransactionEvent --message request --threads 1
run "$dir/v201-bootnotification.jsonl" --version 2.0.1 --action BootNotification --message request
run "$dir/v201-bootnotification.jsonl" --version 2.0.1 --action BootNotification --message request --threads 1
