/**
 * The heartbeat spread over its interval (src/gateway/heartbeat.ts, PROTOCOL §3 item 8):
 * each member pinged once per interval, the first ping one interval after it joined;
 * members that joined at different times pinged in different ticks; a member that does
 * not answer within the timeout reported dead, one that answers kept.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Heartbeat, type HeartbeatMember } from '../../src/gateway/heartbeat.ts';

interface M extends HeartbeatMember {
  name: string;
  pings: number[];
  answers: boolean;
  closed: boolean;
}

const member = (name: string, answers = true): M => ({ name, alive: true, heartbeatSlot: -1, pings: [], answers, closed: false });

describe('Heartbeat', () => {
  let t0: number;
  let dead: string[];
  let perTick: number[];
  let hb: Heartbeat<M>;
  const make = (intervalMs: number, timeoutMs: number) => {
    hb = new Heartbeat<M>(intervalMs, timeoutMs, {
      ping: (m) => {
        if (m.closed) return false;
        m.pings.push(Date.now() - t0);
        perTick[perTick.length - 1]!++;
        // An answering peer's pong arrives 5 ms later.
        if (m.answers) setTimeout(() => (m.alive = true), 5);
        return true;
      },
      dead: (m) => dead.push(m.name),
    });
    return hb;
  };

  beforeEach(() => {
    vi.useFakeTimers();
    t0 = Date.now();
    dead = [];
    perTick = [0];
  });
  afterEach(() => {
    hb?.stop();
    vi.useRealTimers();
  });

  /** Advance one second at a time, recording the pings of each second. */
  const advance = (ms: number) => {
    for (let i = 0; i < ms / 1000; i++) {
      perTick.push(0);
      vi.advanceTimersByTime(1000);
    }
  };

  it('pings a member first one interval after it joined, then every interval', () => {
    make(25_000, 10_000).start();
    const a = member('a');
    hb.add(a);
    advance(24_000);
    expect(a.pings).toEqual([]);
    advance(1_000);
    expect(a.pings).toEqual([25_000]);
    advance(50_000);
    expect(a.pings).toEqual([25_000, 50_000, 75_000]);
    expect(dead).toEqual([]);
  });

  it('spreads members that joined at different times over the ticks', () => {
    make(25_000, 10_000).start();
    const all: M[] = [];
    // 4 members join every second for 25 s: 100 in all.
    for (let s = 0; s < 25; s++) {
      for (let i = 0; i < 4; i++) {
        const m = member(`m${s}.${i}`);
        all.push(m);
        hb.add(m);
      }
      advance(1_000);
    }
    perTick = [0];
    advance(25_000);
    // Each member pinged once in the interval; no tick pings more than the 4 that joined together.
    expect(all.every((m) => m.pings.length >= 1)).toBe(true);
    expect(Math.max(...perTick)).toBe(4);
    expect(hb.size).toBe(100);
  });

  it('reports a member that does not answer within the timeout; one that answers stays', () => {
    make(25_000, 10_000).start();
    const mute = member('mute', false);
    const live = member('live');
    hb.add(mute);
    hb.add(live);
    advance(25_000 + 9_000);
    expect(dead).toEqual([]);
    advance(1_000);
    expect(dead).toEqual(['mute']);
    expect(live.alive).toBe(true);
  });

  it('forgets deleted members: not pinged, not reported', () => {
    make(25_000, 10_000).start();
    const a = member('a', false);
    const b = member('b', false);
    hb.add(a);
    hb.add(b);
    expect(hb.delete(a)).toBe(true);
    expect(hb.delete(a)).toBe(false);
    expect(hb.size).toBe(1);
    expect(hb.all()).toEqual([b]);
    advance(25_000);
    hb.delete(b); // closed after its ping, before the timeout
    advance(10_000);
    expect(a.pings).toEqual([]);
    expect(b.pings).toEqual([25_000]);
    expect(dead).toEqual([]);
  });

  it('an interval under a second is one slot: every member pinged every interval', () => {
    make(600, 500).start();
    const a = member('a');
    hb.add(a);
    vi.advanceTimersByTime(1_800);
    expect(a.pings).toEqual([600, 1_200, 1_800]);
  });

  it('stop() ends pings and pending checks', () => {
    make(25_000, 10_000).start();
    const a = member('a', false);
    hb.add(a);
    advance(25_000);
    hb.stop();
    advance(60_000);
    expect(a.pings).toEqual([25_000]);
    expect(dead).toEqual([]);
  });
});
