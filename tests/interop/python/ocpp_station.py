"""A charging station on the Python `ocpp` package (mobilityhouse), for interop tests.

Runs boot, status, heartbeat, authorize and a full transaction with meter
values, answers the CSMS's GetConfiguration (1.6) / GetVariables (2.x), and
exits 0 once the session is done and one CSMS-initiated call was answered.

usage: ocpp_station.py --url ws://127.0.0.1:9000/ocpp/ --id CP1 --version 2.0.1 [--password P]
"""
import argparse
import asyncio
import base64
import json
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def say(**kw):
    print(json.dumps(kw), flush=True)


def make_station(version):
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call, call_result

        class Station(ChargePoint):
            answered = asyncio.Event()

            @on("GetConfiguration")
            def get_configuration(self, **kw):
                self.answered.set()
                return call_result.GetConfiguration(configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}])

            async def session(self):
                r = await self.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
                assert r.status == "Accepted", r
                await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
                await self.call(call.Heartbeat())
                r = await self.call(call.Authorize(id_tag="TAG1"))
                assert r.id_tag_info["status"] == "Accepted", r
                r = await self.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0, timestamp=now()))
                tx = r.transaction_id
                await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
                await self.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{"timestamp": now(), "sampled_value": [
                    {"value": "1000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"}]}]))
                await self.call(call.StopTransaction(meter_stop=2000, timestamp=now(), transaction_id=tx, id_tag="TAG1"))
                return tx

        return Station, "ocpp1.6"

    if version == "2.0.1":
        from ocpp.v201 import ChargePoint, call, call_result
        sub = "ocpp2.0.1"
    else:
        from ocpp.v21 import ChargePoint, call, call_result
        sub = "ocpp2.1"

    class Station(ChargePoint):
        answered = asyncio.Event()

        @on("GetVariables")
        def get_variables(self, get_variable_data, **kw):
            self.answered.set()
            return call_result.GetVariables(get_variable_result=[{
                "attribute_status": "Accepted", "attribute_value": "300",
                "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}])

        async def session(self):
            r = await self.call(call.BootNotification(charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
            assert r.status == "Accepted", r
            await self.call(call.StatusNotification(timestamp=now(), connector_status="Available", evse_id=1, connector_id=1))
            await self.call(call.Heartbeat())
            r = await self.call(call.Authorize(id_token={"id_token": "TAG1", "type": "ISO14443"}))
            assert r.id_token_info["status"] == "Accepted", r
            tx = {"transaction_id": "T-1"}
            await self.call(call.TransactionEvent(event_type="Started", timestamp=now(), trigger_reason="Authorized", seq_no=0,
                                                  transaction_info=tx, id_token={"id_token": "TAG1", "type": "ISO14443"},
                                                  evse={"id": 1, "connector_id": 1}, meter_value=[{"timestamp": now(), "sampled_value": [
                                                      {"value": 500.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.Begin"}]}]))
            await self.call(call.TransactionEvent(event_type="Updated", timestamp=now(), trigger_reason="MeterValuePeriodic", seq_no=1,
                                                  transaction_info=tx, meter_value=[{"timestamp": now(), "sampled_value": [
                                                      {"value": 1000.5, "measurand": "Energy.Active.Import.Register"}]}]))
            await self.call(call.TransactionEvent(event_type="Ended", timestamp=now(), trigger_reason="StopAuthorized", seq_no=2,
                                                  transaction_info={"transaction_id": "T-1", "stopped_reason": "Local"},
                                                  meter_value=[{"timestamp": now(), "sampled_value": [
                                                      {"value": 2000.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.End"}]}]))
            return "T-1"

    return Station, sub


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--version", required=True, choices=["1.6", "2.0.1", "2.1"])
    p.add_argument("--password")
    a = p.parse_args()
    Station, sub = make_station(a.version)
    headers = {}
    if a.password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{a.id}:{a.password}".encode()).decode()
    async with websockets.connect(a.url + a.id, subprotocols=[sub], additional_headers=headers) as ws:
        say(event="connected", extensions=ws.response.headers.get("Sec-WebSocket-Extensions"))
        cp = Station(a.id, ws)
        runner = asyncio.create_task(cp.start())
        tx = await asyncio.wait_for(cp.session(), 20)
        say(event="session_done", transaction=tx)
        await asyncio.wait_for(cp.answered.wait(), 20)
        say(event="csms_call_answered")
        await asyncio.sleep(0.2)
        runner.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
