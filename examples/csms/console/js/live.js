// Live updates from /api/events without stalling under load.
//
// Events are coalesced: the first one after a quiet spell starts a timer of
// one budget (a second); later ones only join the batch and never postpone
// it. When the timer fires the visible page refreshes once for the whole
// batch. While a form is being edited the refresh waits (the batch keeps
// growing, bounded) so that nothing the operator types is redrawn away.

import { key } from './api.js';

/** A batch of events: how many, which stations and sessions, which kinds, the latest few. */
function emptyBatch() {
  return { count: 0, stations: new Set(), sessions: new Set(), types: new Set(), latest: [] };
}

const KEEP_LATEST = 50;

export class Live {
  /**
   * onBatch(batch): refresh for these events (may be async);
   * isPaused(): true while the operator edits a form;
   * onState(word): 'live' | 'connecting' | 'offline'.
   */
  constructor({ onBatch, isPaused, onState, budgetMs = 1000 }) {
    this.onBatch = onBatch;
    this.isPaused = isPaused;
    this.onState = onState;
    this.budgetMs = budgetMs;
    this.batch = emptyBatch();
    this.timer = null;
    this.running = false;
    this.source = null;
    this.retry = null;
    this.flushes = 0;
  }

  start() {
    this.stop();
    this.onState('connecting');
    const src = new EventSource('/api/events?key=' + encodeURIComponent(key()));
    this.source = src;
    src.onopen = () => this.onState('live');
    src.onerror = () => {
      if (src.readyState === EventSource.CLOSED) {
        // refused (a wrong key) or the server gone: try again later
        this.onState('offline');
        this.retry = setTimeout(() => this.start(), 5000);
      } else {
        this.onState('connecting');
      }
    };
    src.onmessage = (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      this.add(ev);
    };
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.retry);
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Adds an event to the batch; the first of a batch arms the timer. */
  add(ev) {
    const b = this.batch;
    b.count++;
    if (ev.station) b.stations.add(ev.station);
    if (ev.session) b.sessions.add(ev.session);
    if (ev.type) b.types.add(ev.type);
    b.latest.push(ev);
    if (b.latest.length > KEEP_LATEST) b.latest.shift();
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.budgetMs);
  }

  async flush() {
    this.timer = null;
    if (this.running || this.isPaused()) {
      // a refresh still running, or a form being edited: try again after one budget
      this.timer = setTimeout(() => this.flush(), this.budgetMs);
      return;
    }
    const batch = this.batch;
    this.batch = emptyBatch();
    if (!batch.count) return;
    this.running = true;
    this.flushes++;
    try {
      await this.onBatch(batch);
    } catch (e) {
      console.warn('live refresh failed', e);
    } finally {
      this.running = false;
    }
  }
}
