// The console's live updates (console/js/live.js) under a burst of events,
// with Node's mocked clock: one refresh per budget however many events
// come, started by the first event and not postponed by later ones, held
// while a form is edited, and nothing lost. Run by tests/console.rs
// (`node --test`).

import { test, mock } from 'node:test';
import assert from 'node:assert/strict';

// what live.js touches of a browser: the key and an EventSource
globalThis.sessionStorage = { getItem: () => 'k', setItem() {}, removeItem() {} };
class FakeSource {
  static CLOSED = 2;
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    FakeSource.last = this;
  }
  close() {
    this.readyState = FakeSource.CLOSED;
  }
  emit(ev) {
    this.onmessage({ data: JSON.stringify(ev) });
  }
}
globalThis.EventSource = FakeSource;

const { Live } = await import('../../console/js/live.js');

/** Advances the mocked clock, then lets the refreshes it started finish (as the browser's event loop would). */
async function tick(ms) {
  mock.timers.tick(ms);
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

function setup(paused = () => false) {
  const batches = [];
  const states = [];
  const live = new Live({ onBatch: (b) => batches.push(b), isPaused: paused, onState: (s) => states.push(s), budgetMs: 1000 });
  live.start();
  return { live, batches, states, src: FakeSource.last };
}

test('a burst of events is one refresh a second, none lost', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { live, batches, src } = setup();
    assert.match(src.url, /^\/api\/events\?key=k$/);
    // 10,000 events over 3.5 s: 2,857 a second from 100 stations
    let sent = 0;
    for (let ms = 0; ms < 3500; ms += 10) {
      for (let i = 0; i < 29 && sent < 10_000; i++, sent++) src.emit({ type: 'meter', station: 'CP' + (sent % 100), session: 'S' + (sent % 250) });
      await tick(10);
    }
    await tick(1000);
    // the first refresh one budget after the first event, whatever followed
    assert.equal(batches.length, 4, 'refreshes for 3.5 s of events and the tail');
    assert.equal(batches.reduce((a, b) => a + b.count, 0), sent, 'every event counted in a batch');
    assert.equal(batches[0].stations.size, 100);
    assert.equal(batches[0].sessions.size, 250);
    assert.ok(batches[0].latest.length <= 50, 'only the latest few kept');
    live.stop();
  } finally {
    mock.timers.reset();
  }
});

test('the first event arms the timer; later ones do not postpone it', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { live, batches, src } = setup();
    src.emit({ type: 'status', station: 'A' });
    await tick(900);
    src.emit({ type: 'status', station: 'B' });
    await tick(100);
    assert.equal(batches.length, 1, 'refreshed at 1 s after the first event');
    assert.deepEqual([...batches[0].stations].sort(), ['A', 'B']);
    await tick(5000);
    assert.equal(batches.length, 1, 'no refresh without events');
    live.stop();
  } finally {
    mock.timers.reset();
  }
});

test('no refresh while a form is edited; the events wait, then one refresh', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    let editing = true;
    const { live, batches, src } = setup(() => editing);
    for (let i = 0; i < 50; i++) {
      src.emit({ type: 'meter', station: 'X', session: 'S' + i });
      await tick(100);
    }
    assert.equal(batches.length, 0, 'refreshed while the operator was typing');
    editing = false;
    await tick(1000);
    assert.equal(batches.length, 1);
    assert.equal(batches[0].count, 50);
    live.stop();
  } finally {
    mock.timers.reset();
  }
});

test('a refused stream says offline and tries again', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const { live, states, src } = setup();
    src.readyState = FakeSource.CLOSED;
    src.onerror();
    assert.equal(states.at(-1), 'offline');
    await tick(5000);
    assert.notEqual(FakeSource.last, src, 'a new stream after 5 s');
    assert.equal(states.at(-1), 'connecting');
    live.stop();
  } finally {
    mock.timers.reset();
  }
});
