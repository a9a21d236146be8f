/**
 * Refusals of the Redis bus by reason (src/fanout/refusals.ts): `chat_bus_refused_total`
 * exports every reason from 0 (so an alert on `increase` sees the first refusal), counts
 * each under its own label, and sums per reason over cluster workers (prom-client
 * AggregatorRegistry, as the primary of cluster-server.ts serves /metrics); the warning log
 * is throttled and carries counts by reason, nothing of the messages.
 */
import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BUS_REFUSALS, REFUSAL_LOG_MS, RefusalCounter, type BusRefusal } from '../../src/fanout/refusals.ts';
import type { Logger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';

const gauges = { connections: () => 0, users: () => 0 };

/** `chat_bus_refused_total` by reason in a Prometheus text exposition. */
function refusedIn(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [, reason, n] of text.matchAll(/^chat_bus_refused_total\{reason="([a-z]+)"\} (\d+)$/gm)) out[reason!] = Number(n);
  return out;
}

describe('chat_bus_refused_total', () => {
  it('exports every reason from 0 and counts each under its own label', async () => {
    const m = new Metrics(gauges);
    expect(refusedIn(await m.text())).toEqual(Object.fromEntries(BUS_REFUSALS.map((r) => [r, 0])));
    BUS_REFUSALS.forEach((r, i) => {
      for (let k = 0; k <= i; k++) m.busRefused(r);
    });
    expect(refusedIn(await m.text())).toEqual({ malformed: 1, unauthenticated: 2, plaintext: 3, stale: 4, replayed: 5, redirected: 6 });
  });

  it('sums per reason over cluster workers', async () => {
    const [w1, w2] = [new Metrics(gauges), new Metrics(gauges)];
    w1.busRefused('stale');
    w1.busRefused('replayed');
    w2.busRefused('stale');
    w2.busRefused('unauthenticated');
    const sum = client.AggregatorRegistry.aggregate([await w1.registry.getMetricsAsJSON(), await w2.registry.getMetricsAsJSON()]);
    expect(refusedIn(await sum.metrics())).toEqual({ malformed: 0, unauthenticated: 1, plaintext: 0, stale: 2, replayed: 1, redirected: 0 });
  });
});

describe('RefusalCounter', () => {
  it('counts by reason, calls the hook once per refusal, logs at most every 30 s with the counts since the last line', () => {
    const lines: [string, Record<string, unknown>][] = [];
    const logger = { warn: (msg: string, fields: Record<string, unknown>) => lines.push([msg, fields]) } as unknown as Logger;
    const hooked: BusRefusal[] = [];
    const r = new RefusalCounter(logger, (reason) => hooked.push(reason));
    const t0 = 1_700_000_000_000;
    r.note('stale', t0);
    r.note('malformed', t0 + 1);
    r.note('replayed', t0 + 2);
    r.note('malformed', t0 + REFUSAL_LOG_MS - 1);
    expect(lines.map((l) => l[1])).toEqual([{ refused: 1, stale: 1 }]);
    r.note('redirected', t0 + REFUSAL_LOG_MS);
    expect(lines.map((l) => l[1])).toEqual([{ refused: 1, stale: 1 }, { refused: 4, malformed: 2, replayed: 1, redirected: 1 }]);
    expect(hooked).toEqual(['stale', 'malformed', 'replayed', 'malformed', 'redirected']);
    expect(r.count).toBe(5);
    expect(r.byReason).toEqual({ malformed: 2, unauthenticated: 0, plaintext: 0, stale: 1, replayed: 1, redirected: 1 });
  });
});
