"""A 2.0.1 charging station on the Python `ocpp` package doing the
certificate messages of Plug & Charge against our CSMS (started with --pnc).

Every message both ways goes through the package's own OCPP 2.0.1 schemas
(it validates the calls it receives and the answers it gets): SignCertificate
answered, CertificateSigned received, Authorize with a contract's eMAID and
chain, GetCertificateStatus, Get15118EVCertificate (a request the provider
cannot read: answered Failed), then InstallCertificate and
GetInstalledCertificateIds from the CSMS's operator API.

Prints one JSON line per event; exits 0 when every step went as expected.
"""

import argparse
import asyncio
import base64
import json
import sys

import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result


def say(**kw):
    print(json.dumps(kw), flush=True)


class Station(ChargePoint):
    signed = asyncio.Event()
    installed = asyncio.Event()
    listed = asyncio.Event()
    chain = None

    @on("CertificateSigned")
    def certificate_signed(self, certificate_chain, certificate_type=None, **kw):
        self.chain = certificate_chain
        self.signed.set()
        say(event="certificate_signed", certificate_type=certificate_type,
            certificates=certificate_chain.count("BEGIN CERTIFICATE"))
        return call_result.CertificateSigned(status="Accepted")

    @on("InstallCertificate")
    def install_certificate(self, certificate_type, certificate, **kw):
        say(event="install_certificate", certificate_type=certificate_type,
            pem=certificate.startswith("-----BEGIN CERTIFICATE-----"))
        self.installed.set()
        return call_result.InstallCertificate(status="Accepted")

    @on("GetInstalledCertificateIds")
    def get_installed_certificate_ids(self, certificate_type=None, **kw):
        say(event="get_installed_certificate_ids", certificate_type=certificate_type)
        self.listed.set()
        return call_result.GetInstalledCertificateIds(status="Accepted", certificate_hash_data_chain=[{
            "certificate_type": "V2GRootCertificate",
            "certificate_hash_data": {"hash_algorithm": "SHA256", "issuer_name_hash": "ab" * 32,
                                      "issuer_key_hash": "cd" * 32, "serial_number": "1f"}}])

    async def session(self, a):
        r = await self.call(call.BootNotification(charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"))
        assert r.status == "Accepted", r
        csr = open(a.csr).read()
        r = await self.call(call.SignCertificate(csr=csr, certificate_type="V2GCertificate"))
        assert r.status == "Accepted", r
        say(event="sign_certificate", status=r.status)
        await asyncio.wait_for(self.signed.wait(), 20)
        chain = open(a.contract).read()
        r = await self.call(call.Authorize(id_token={"id_token": a.emaid, "type": "eMAID"}, certificate=chain))
        say(event="authorize", status=r.id_token_info["status"], certificate_status=r.certificate_status)
        assert r.id_token_info["status"] == "Accepted" and r.certificate_status == "Accepted", r
        ocsp = json.loads(a.ocsp)
        r = await self.call(call.Authorize(id_token={"id_token": a.emaid, "type": "eMAID"},
                                           iso15118_certificate_hash_data=[ocsp]))
        assert r.certificate_status == "Accepted", r
        r = await self.call(call.GetCertificateStatus(ocsp_request_data=ocsp))
        say(event="get_certificate_status", status=r.status, ocsp_result=bool(r.ocsp_result))
        assert r.status == "Accepted" and base64.b64decode(r.ocsp_result)[0] == 0x30, r
        r = await self.call(call.Get15118EVCertificate(iso15118_schema_version="urn:iso:15118:2:2013:MsgDef",
                                                      action="Install",
                                                      exi_request=base64.b64encode(b"not EXI").decode()))
        say(event="get_15118_ev_certificate", status=r.status)
        assert r.status == "Failed", r
        say(event="ready")
        await asyncio.wait_for(self.installed.wait(), 20)
        await asyncio.wait_for(self.listed.wait(), 20)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--csr", required=True, help="the station's CSR (PEM file)")
    p.add_argument("--emaid", required=True)
    p.add_argument("--contract", required=True, help="the contract's chain (PEM file)")
    p.add_argument("--ocsp", required=True, help="the contract's OCSPRequestDataType (JSON, snake_case)")
    a = p.parse_args()
    async with websockets.connect(a.url + a.id, subprotocols=["ocpp2.0.1"]) as ws:
        cp = Station(a.id, ws)
        runner = asyncio.create_task(cp.start())
        await asyncio.wait_for(cp.session(a), 60)
        say(event="done")
        await asyncio.sleep(0.2)
        runner.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
