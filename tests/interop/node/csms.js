// A CSMS on Node's `ocpp-rpc` (strict mode), for interop tests. Accepts one
// subprotocol, answers a charging session's calls, and once a station's boot
// is answered calls it back with GetConfiguration (1.6) / GetVariables (2.x).
// Prints JSON lines: {"event":"listening","port":N} first, then one "call"
// per received call and "csms_call_result" for the callback's answer.
//
// usage: node csms.js --port 0 --version 2.0.1
'use strict';
const { RPCServer } = require('ocpp-rpc');
const { args, say, now, subprotocol, strict } = require('./common');

const a = args();
const v = a.version;
let nextTx = 1;

function answer(method, params) {
  switch (method) {
    case 'BootNotification': return { currentTime: now(), interval: 300, status: 'Accepted' };
    case 'Heartbeat': return { currentTime: now() };
    case 'Authorize': return v === '1.6' ? { idTagInfo: { status: 'Accepted' } } : { idTokenInfo: { status: 'Accepted' } };
    case 'StartTransaction': return { idTagInfo: { status: 'Accepted' }, transactionId: nextTx++ };
    case 'TransactionEvent': return params.eventType === 'Started' ? { idTokenInfo: { status: 'Accepted' } } : {};
    default: return {};
  }
}

async function main() {
  const server = new RPCServer({ protocols: [subprotocol(v)], strictMode: strict(v) });
  server.auth((accept) => accept());
  server.on('client', (client) => {
    client.handle(({ method, params }) => {
      say({ event: 'call', identity: client.identity, action: method });
      if (method === 'BootNotification') {
        setTimeout(async () => {
          try {
            const res = v === '1.6'
              ? await client.call('GetConfiguration', { key: ['HeartbeatInterval'] })
              : await client.call('GetVariables', { getVariableData: [{ component: { name: 'OCPPCommCtrlr' }, variable: { name: 'HeartbeatInterval' } }] });
            say({ event: 'csms_call_result', identity: client.identity, result: res });
          } catch (e) {
            say({ event: 'csms_call_failed', identity: client.identity, error: String(e) });
          }
        }, 100);
      }
      return answer(method, params);
    });
  });
  const http = await server.listen(Number(a.port || 0), '127.0.0.1');
  say({ event: 'listening', port: http.address().port });
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
