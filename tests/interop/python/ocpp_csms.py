"""A CSMS on the Python `ocpp` package, for interop tests.

Accepts stations of one version, answers a charging session's calls, sends
each booted station GetConfiguration (1.6) / GetVariables (2.x), prints JSON
lines (`listening`, each call, `csms_call_result`), and exits 0 when a
station that finished its session disconnects.

usage: ocpp_csms.py --port 0 --version 2.0.1
"""
import argparse
import asyncio
import json
import sys
from datetime import datetime, timezone

import websockets
from ocpp.routing import on


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def say(**kw):
    print(json.dumps(kw), flush=True)


def make_csms(version):
    if version == "1.6":
        from ocpp.v16 import ChargePoint, call, call_result

        class Csms(ChargePoint):
            tx = 0

            @on("BootNotification")
            def boot(self, **kw):
                say(event="call", action="BootNotification")
                asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(self.ask()))
                return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

            @on("StatusNotification")
            def status(self, **kw):
                say(event="call", action="StatusNotification")
                return call_result.StatusNotification()

            @on("Heartbeat")
            def heartbeat(self, **kw):
                say(event="call", action="Heartbeat")
                return call_result.Heartbeat(current_time=now())

            @on("Authorize")
            def authorize(self, **kw):
                say(event="call", action="Authorize")
                return call_result.Authorize(id_tag_info={"status": "Accepted"})

            @on("StartTransaction")
            def start_tx(self, **kw):
                Csms.tx += 1
                say(event="call", action="StartTransaction")
                return call_result.StartTransaction(transaction_id=Csms.tx, id_tag_info={"status": "Accepted"})

            @on("MeterValues")
            def meter_values(self, **kw):
                say(event="call", action="MeterValues")
                return call_result.MeterValues()

            @on("StopTransaction")
            def stop_tx(self, **kw):
                say(event="call", action="StopTransaction")
                return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

            async def ask(self):
                r = await self.call(call.GetConfiguration(key=["HeartbeatInterval"]))
                say(event="csms_call_result", result=str(r))

        return Csms, "ocpp1.6"

    if version == "2.0.1":
        from ocpp.v201 import ChargePoint, call, call_result
        sub = "ocpp2.0.1"
    else:
        from ocpp.v21 import ChargePoint, call, call_result
        sub = "ocpp2.1"

    class Csms(ChargePoint):
        @on("BootNotification")
        def boot(self, **kw):
            say(event="call", action="BootNotification")
            asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(self.ask()))
            return call_result.BootNotification(current_time=now(), interval=300, status="Accepted")

        @on("StatusNotification")
        def status(self, **kw):
            say(event="call", action="StatusNotification")
            return call_result.StatusNotification()

        @on("Heartbeat")
        def heartbeat(self, **kw):
            say(event="call", action="Heartbeat")
            return call_result.Heartbeat(current_time=now())

        @on("Authorize")
        def authorize(self, **kw):
            say(event="call", action="Authorize")
            return call_result.Authorize(id_token_info={"status": "Accepted"})

        @on("TransactionEvent")
        def tx_event(self, event_type, **kw):
            say(event="call", action="TransactionEvent", event_type=event_type)
            return call_result.TransactionEvent()

        @on("MeterValues")
        def meter_values(self, **kw):
            say(event="call", action="MeterValues")
            return call_result.MeterValues()

        async def ask(self):
            r = await self.call(call.GetVariables(get_variable_data=[
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]))
            say(event="csms_call_result", result=str(r))

    return Csms, sub


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--version", required=True, choices=["1.6", "2.0.1", "2.1"])
    p.add_argument("--forever", action="store_true", help="serve until killed, quietly (load baseline)")
    a = p.parse_args()
    if a.forever:
        global say
        say = lambda **kw: None
    Csms, sub = make_csms(a.version)
    done = asyncio.Event()

    async def handler(ws):
        ident = ws.request.path.rsplit("/", 1)[-1]
        say(event="connected", identity=ident, subprotocol=ws.subprotocol,
            extensions=ws.response.headers.get("Sec-WebSocket-Extensions"))
        cp = Csms(ident, ws)
        try:
            await cp.start()
        except websockets.exceptions.ConnectionClosed:
            pass
        say(event="disconnected", identity=ident)
        done.set()

    async with websockets.serve(handler, "127.0.0.1", a.port, subprotocols=[sub]) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"event": "listening", "port": port}), flush=True)
        if a.forever:
            await asyncio.Future()
        await asyncio.wait_for(done.wait(), 60)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
