/**
 * DeadlineWheel (src/gateway/deadlines.ts): never early, at most one resolution late,
 * cancel and reschedule, timer only while entries are pending. Driven by a fake clock and
 * explicit ticks, plus one run on the real timer.
 */
import { describe, expect, it } from 'vitest';
import { DeadlineWheel } from '../../src/gateway/deadlines.ts';

function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('DeadlineWheel', () => {
  it('fires each entry at the first tick at or after its due time, never early', () => {
    const clock = fakeClock();
    const fired: string[] = [];
    const w = new DeadlineWheel<string>(100, (x) => fired.push(x), clock.now);
    const t0 = clock.now();
    w.set('a', t0 + 250);
    w.set('b', t0 + 100);
    w.set('c', t0 + 1000);
    clock.advance(99);
    w.tick();
    expect(fired).toEqual([]);
    clock.advance(1); // t0 + 100
    w.tick();
    expect(fired).toEqual(['b']);
    clock.advance(149); // t0 + 249
    w.tick();
    expect(fired).toEqual(['b']);
    clock.advance(51); // t0 + 300: a (due 250) fires in the bucket ending at 300
    w.tick();
    expect(fired).toEqual(['b', 'a']);
    expect(w.size()).toBe(1);
    w.close();
  });

  it('clear cancels; set again reschedules (one deadline per item)', () => {
    const clock = fakeClock();
    const fired: string[] = [];
    const w = new DeadlineWheel<string>(100, (x) => fired.push(x), clock.now);
    const t0 = clock.now();
    w.set('a', t0 + 100);
    w.set('b', t0 + 100);
    w.clear('a');
    w.set('b', t0 + 500);
    clock.advance(200);
    w.tick();
    expect(fired).toEqual([]);
    clock.advance(300);
    w.tick();
    expect(fired).toEqual(['b']);
    expect(w.size()).toBe(0);
    w.clear('b'); // no-op
    w.close();
  });

  it('a past due time fires at the next tick; a long stall fires everything due, in order', () => {
    const clock = fakeClock();
    const fired: string[] = [];
    const w = new DeadlineWheel<string>(100, (x) => fired.push(x), clock.now);
    const t0 = clock.now();
    w.set('past', t0 - 10_000);
    w.set('late', t0 + 3_000_000);
    w.set('mid', t0 + 2_000_000);
    w.set('never', t0 + 10_000_000);
    clock.advance(100);
    w.tick();
    expect(fired).toEqual(['past']);
    clock.advance(5_000_000); // far more buckets than entries: scans the keys instead
    w.tick();
    expect(fired).toEqual(['past', 'mid', 'late']);
    expect(w.size()).toBe(1);
    w.close();
    expect(w.size()).toBe(0);
  });

  it('runs on the real timer and stops it when nothing is pending', async () => {
    const fired: number[] = [];
    const w = new DeadlineWheel<number>(20, (x) => fired.push(x));
    const start = Date.now();
    w.set(1, start + 60);
    await new Promise((r) => setTimeout(r, 40));
    expect(fired).toEqual([]);
    await new Promise((r) => setTimeout(r, 150));
    expect(fired).toEqual([1]);
    expect((w as unknown as { timer: unknown }).timer).toBeUndefined();
  });
});
