// Shared by station.js and csms.js: argument parsing, JSON event lines, and
// the session's payloads per version.
'use strict';

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function now() {
  return new Date().toISOString();
}

function subprotocol(version) {
  return { '1.6': 'ocpp1.6', '2.0.1': 'ocpp2.0.1', '2.1': 'ocpp2.1' }[version];
}

// ocpp-rpc 2.2.1 ships 2.1 schemas whose ids (`urn:BootNotificationRequest`)
// do not match what its validator looks up (`urn:BootNotification.req`), so
// strict mode cannot run for 2.1; our side validates every 2.1 message anyway.
function strict(version) {
  return version !== '2.1';
}

module.exports = { args, say, now, subprotocol, strict };
