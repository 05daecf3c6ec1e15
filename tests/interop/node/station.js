// A charging station on Node's `ocpp-rpc` (strict mode: every message it
// sends or receives is checked against the OCPP schemas), for interop tests.
// Runs boot, status, heartbeat, authorize and a transaction with meter
// values, answers GetConfiguration (1.6) / GetVariables (2.x), and exits 0
// once the session is done and one CSMS-initiated call was answered.
//
// usage: node station.js --url ws://127.0.0.1:9000/ocpp --id CP1 --version 2.0.1 [--password P]
'use strict';
const { RPCClient } = require('ocpp-rpc');
const { args, say, now, subprotocol, strict } = require('./common');

async function main() {
  const a = args();
  const v = a.version;
  const client = new RPCClient({
    endpoint: a.url.replace(/\/$/, ''),
    identity: a.id,
    password: a.password ?? null,
    protocols: [subprotocol(v)],
    strictMode: strict(v),
    reconnect: false,
  });
  let answered;
  const done = new Promise((resolve) => { answered = resolve; });
  if (v === '1.6') {
    client.handle('GetConfiguration', () => {
      answered();
      return { configurationKey: [{ key: 'HeartbeatInterval', readonly: false, value: '300' }] };
    });
  } else {
    client.handle('GetVariables', () => {
      answered();
      return { getVariableResult: [{ attributeStatus: 'Accepted', attributeValue: '300',
        component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' } }] };
    });
  }
  await client.connect();
  say({ event: 'connected', protocol: client.protocol });
  if (v === '1.6') {
    const boot = await client.call('BootNotification', { chargePointVendor: 'V', chargePointModel: 'M' });
    if (boot.status !== 'Accepted') throw new Error('boot ' + boot.status);
    await client.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Available' });
    await client.call('Heartbeat', {});
    const auth = await client.call('Authorize', { idTag: 'TAG1' });
    if (auth.idTagInfo.status !== 'Accepted') throw new Error('authorize ' + auth.idTagInfo.status);
    const start = await client.call('StartTransaction', { connectorId: 1, idTag: 'TAG1', meterStart: 0, timestamp: now() });
    const tx = start.transactionId;
    await client.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' });
    await client.call('MeterValues', { connectorId: 1, transactionId: tx, meterValue: [{ timestamp: now(), sampledValue: [
      { value: '1000', measurand: 'Energy.Active.Import.Register', unit: 'Wh' }] }] });
    await client.call('StopTransaction', { meterStop: 2000, timestamp: now(), transactionId: tx, idTag: 'TAG1' });
  } else {
    const boot = await client.call('BootNotification', { reason: 'PowerUp', chargingStation: { model: 'M', vendorName: 'V' } });
    if (boot.status !== 'Accepted') throw new Error('boot ' + boot.status);
    await client.call('StatusNotification', { timestamp: now(), connectorStatus: 'Available', evseId: 1, connectorId: 1 });
    await client.call('Heartbeat', {});
    const auth = await client.call('Authorize', { idToken: { idToken: 'TAG1', type: 'ISO14443' } });
    if (auth.idTokenInfo.status !== 'Accepted') throw new Error('authorize ' + auth.idTokenInfo.status);
    const info = { transactionId: 'NODE-T1' };
    await client.call('TransactionEvent', { eventType: 'Started', timestamp: now(), triggerReason: 'Authorized', seqNo: 0,
      transactionInfo: info, idToken: { idToken: 'TAG1', type: 'ISO14443' }, evse: { id: 1, connectorId: 1 } });
    await client.call('TransactionEvent', { eventType: 'Updated', timestamp: now(), triggerReason: 'MeterValuePeriodic', seqNo: 1,
      transactionInfo: info, meterValue: [{ timestamp: now(), sampledValue: [{ value: 1000.5, measurand: 'Energy.Active.Import.Register' }] }] });
    await client.call('TransactionEvent', { eventType: 'Ended', timestamp: now(), triggerReason: 'StopAuthorized', seqNo: 2,
      transactionInfo: { ...info, stoppedReason: 'Local' } });
  }
  say({ event: 'session_done' });
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no CSMS-initiated call')), 20000));
  await Promise.race([done, timeout]);
  say({ event: 'csms_call_answered' });
  await new Promise((r) => setTimeout(r, 200));
  await client.close();
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
