"""An extrawest-ocpi (py_ocpi) CPO for interop tests.

Run with the venv that has `extrawest-ocpi` and `uvicorn`:

    python extrawest_cpo.py --port 0 --token-a TOKEN_A --locations 150

Serves OCPI 2.2.1 as a CPO (credentials, locations, sessions, cdrs, tariffs,
tokens, commands) with an in-memory store, prints `READY <port>` when
listening, and exposes the package's push endpoint (`/push/2.2.1`) so a test
can make it push objects to our eMSP.
"""

import argparse
import asyncio
import os
import socket
import sys
import uuid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token-a", required=True)
    ap.add_argument("--locations", type=int, default=150)
    args = ap.parse_args()

    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    # py_ocpi reads its settings from the environment at import time.
    os.environ["OCPI_HOST"] = f"127.0.0.1:{port}"
    os.environ["PROTOCOL"] = "http"
    os.environ["COUNTRY_CODE"] = "NL"
    os.environ["PARTY_ID"] = "EXW"
    os.environ.setdefault("ENVIRONMENT", "production")

    import uvicorn
    from py_ocpi import get_application
    from py_ocpi.core.authentication.authenticator import Authenticator
    from py_ocpi.core.crud import Crud
    from py_ocpi.core.enums import ModuleID, RoleEnum
    from py_ocpi.modules.versions.enums import VersionNumber

    ts = "2024-01-01T00:00:00Z"
    store = {m: {} for m in ("locations", "sessions", "cdrs", "tariffs", "tokens")}
    tokens_a = [args.token_a]
    tokens_c = []
    parties = {}

    for i in range(args.locations):
        lid = f"LOC{i:03d}"
        store["locations"][lid] = {
            "country_code": "NL", "party_id": "EXW", "id": lid, "publish": True,
            "address": "Main street 1", "city": "Delft", "country": "NLD",
            "coordinates": {"latitude": "52.011", "longitude": "4.357"},
            "time_zone": "Europe/Amsterdam",
            "evses": [{"uid": f"EVSE{i}", "status": "AVAILABLE", "last_updated": ts,
                       "connectors": [{"id": "1", "standard": "IEC_62196_T2", "format": "SOCKET",
                                       "power_type": "AC_3_PHASE", "max_voltage": 230,
                                       "max_amperage": 16, "last_updated": ts}]}],
            "last_updated": ts,
        }
    for i in range(3):
        tid = f"TARIFF{i}"
        store["tariffs"][tid] = {
            "country_code": "NL", "party_id": "EXW", "id": tid, "currency": "EUR",
            "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25 + i / 10, "step_size": 1}]}],
            "last_updated": ts,
        }
        cdr_token = {"country_code": "DE", "party_id": "EMS", "uid": f"TOKEN{i}", "type": "RFID",
                     "contract_id": f"DE-EMS-C0000000{i}-X"}
        store["sessions"][f"S{i}"] = {
            "country_code": "NL", "party_id": "EXW", "id": f"S{i}", "start_date_time": ts,
            "kwh": 10.5, "cdr_token": cdr_token, "auth_method": "WHITELIST",
            "location_id": "LOC000", "evse_uid": "EVSE0", "connector_id": "1",
            "currency": "EUR", "status": "ACTIVE", "last_updated": ts,
        }
        store["cdrs"][f"CDR{i}"] = {
            "country_code": "NL", "party_id": "EXW", "id": f"CDR{i}", "start_date_time": ts,
            "end_date_time": "2024-01-01T01:00:00Z", "cdr_token": cdr_token, "auth_method": "WHITELIST",
            "cdr_location": {"id": "LOC000", "address": "Main street 1", "city": "Delft",
                             "country": "NLD", "coordinates": {"latitude": "52.011", "longitude": "4.357"},
                             "evse_uid": "EVSE0", "evse_id": "NL*EXW*E0", "connector_id": "1",
                             "connector_standard": "IEC_62196_T2", "connector_format": "SOCKET",
                             "connector_power_type": "AC_3_PHASE"},
            "currency": "EUR", "charging_periods": [{"start_date_time": ts,
                                                     "dimensions": [{"type": "ENERGY", "volume": 10}]}],
            "total_cost": {"excl_vat": 2.5}, "total_energy": 10, "total_time": 1,
            "last_updated": ts,
        }

    class Auth(Authenticator):
        @classmethod
        async def get_valid_token_c(cls):
            return tokens_c

        @classmethod
        async def get_valid_token_a(cls):
            return tokens_a

    def module_name(module):
        return {
            ModuleID.locations: "locations", ModuleID.sessions: "sessions", ModuleID.cdrs: "cdrs",
            ModuleID.tariffs: "tariffs", ModuleID.tokens: "tokens",
        }.get(module)

    def own_credentials(token):
        return {"token": token, "url": f"http://127.0.0.1:{port}/ocpi/versions",
                "roles": [{"role": "CPO", "party_id": "EXW", "country_code": "NL",
                           "business_details": {"name": "extrawest CPO"}}]}

    class MemoryCrud(Crud):
        @classmethod
        async def get(cls, module, role, id, *args, **kwargs):
            if module == ModuleID.credentials_and_registration:
                return own_credentials(id)
            if module == ModuleID.commands:
                return None
            name = module_name(module)
            # py_ocpi lower-cases CiString path parameters; our keys keep their case
            objs = store.get(name, {})
            return next((v for k, v in objs.items() if k.lower() == str(id).lower()), None)

        @classmethod
        async def list(cls, module, role, filters, *args, **kwargs):
            items = sorted(store[module_name(module)].values(), key=lambda o: o.get("id", ""))
            off, lim = filters["offset"], filters["limit"]
            page = items[off:off + lim]
            return page, len(items), off + lim >= len(items)

        @classmethod
        async def create(cls, module, role, data, *args, **kwargs):
            if module == ModuleID.credentials_and_registration:
                token_c = str(uuid.uuid4())
                tokens_c.append(token_c)
                used = kwargs.get("auth_token")
                if used in tokens_a:
                    tokens_a.remove(used)
                parties[token_c] = data
                return own_credentials(token_c)
            if module == ModuleID.commands:
                return {"result": "ACCEPTED", "timeout": 30}
            name = module_name(module)
            key = data.get("uid") or data.get("id")
            store[name][key] = data
            return data

        @classmethod
        async def update(cls, module, role, data, id, *args, **kwargs):
            if module == ModuleID.credentials_and_registration:
                return await cls.create(module, role, data, *args, **kwargs)
            name = module_name(module)
            store[name].setdefault(id, {}).update(data)
            return store[name][id]

        @classmethod
        async def delete(cls, module, role, id, *args, **kwargs):
            if module == ModuleID.credentials_and_registration:
                if id in tokens_c:
                    tokens_c.remove(id)
                return None
            store.get(module_name(module), {}).pop(id, None)

        @classmethod
        async def do(cls, module, role, action, *args, data=None, **kwargs):
            return None

    app = get_application(
        version_numbers=[VersionNumber.v_2_2_1],
        roles=[RoleEnum.cpo],
        crud=MemoryCrud,
        modules=[ModuleID.credentials_and_registration, ModuleID.locations, ModuleID.sessions,
                 ModuleID.cdrs, ModuleID.tariffs, ModuleID.tokens, ModuleID.commands],
        authenticator=Auth,
        http_push=True,
    )

    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.05)
        print(f"READY {port}", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
