/**
 * The inbound flow control of a connection (src/gateway/inboundBudget.ts): frame and byte
 * buckets, their refill, the smaller budget before authentication, and the read gate.
 */
import { describe, expect, it } from 'vitest';
import { BYTE_BURST, BYTE_BURST_UNAUTHENTICATED, BYTES_PER_S, FRAME_BURST, FRAME_BURST_UNAUTHENTICATED, FRAMES_PER_S, FRAMES_PER_S_UNAUTHENTICATED, InboundBudget, PAUSED_BACKLOG, PAUSED_BUDGET, ReadGate } from '../../src/gateway/inboundBudget.ts';

/** A budget on a clock the test moves. */
function budget(): { b: InboundBudget; advance: (ms: number) => void } {
  let now = 1_000_000;
  return { b: new InboundBudget(() => now), advance: (ms) => (now += ms) };
}

describe('InboundBudget', () => {
  it('before authentication: the small burst, then a wait that pays the deficit back at the small rate', () => {
    const { b } = budget();
    for (let i = 0; i < FRAME_BURST_UNAUTHENTICATED; i++) expect(b.take(20, false)).toBe(0);
    expect(b.take(20, false)).toBe(Math.ceil(1000 / FRAMES_PER_S_UNAUTHENTICATED));
  });

  it('authenticated: refills at FRAMES_PER_S up to FRAME_BURST', () => {
    const { b, advance } = budget();
    advance(60_000); // a long idle time refills to the burst, not beyond
    for (let i = 0; i < FRAME_BURST; i++) expect(b.take(20, true)).toBe(0);
    expect(b.take(20, true)).toBeGreaterThan(0);
    advance(1000);
    // One second later: FRAMES_PER_S more, less the one that overdrew.
    for (let i = 0; i < FRAMES_PER_S - 1; i++) expect(b.take(20, true)).toBe(0);
    expect(b.take(20, true)).toBeGreaterThan(0);
  });

  it('bytes: a burst of BYTE_BURST, then the wait is the byte deficit at BYTES_PER_S', () => {
    const { b, advance } = budget();
    advance(60_000);
    expect(b.take(BYTE_BURST, true)).toBe(0);
    advance(1000); // frames refill too; only bytes are short below
    expect(b.take(BYTES_PER_S * 2, true)).toBe(1000);
  });

  it('bytes before authentication: a burst of BYTE_BURST_UNAUTHENTICATED however long idle; authenticating raises it to BYTE_BURST (audit 7, F4)', () => {
    const { b, advance } = budget();
    advance(60_000);
    expect(b.take(BYTE_BURST_UNAUTHENTICATED, false)).toBe(0);
    expect(b.take(BYTES_PER_S, false)).toBe(1000);
    const { b: b2, advance: advance2 } = budget();
    expect(b2.take(BYTE_BURST_UNAUTHENTICATED, false)).toBe(0);
    advance2(1);
    expect(b2.take(BYTE_BURST, true)).toBe(0); // topped up once authenticated
    expect(b2.take(BYTES_PER_S, true)).toBeGreaterThan(0);
  });
});

describe('ReadGate', () => {
  it('pauses on the first reason and resumes when the last one clears; open() clears all', () => {
    const calls: string[] = [];
    const g = new ReadGate({ pause: () => calls.push('pause'), resume: () => calls.push('resume') });
    g.set(PAUSED_BACKLOG, true);
    g.set(PAUSED_BUDGET, true);
    expect(g.paused).toBe(true);
    g.set(PAUSED_BACKLOG, false);
    expect(g.has(PAUSED_BUDGET)).toBe(true);
    g.set(PAUSED_BUDGET, false);
    expect(calls).toEqual(['pause', 'resume']);
    g.set(PAUSED_BUDGET, true);
    g.open();
    expect(g.paused).toBe(false);
    expect(calls).toEqual(['pause', 'resume', 'pause', 'resume']);
  });
});
