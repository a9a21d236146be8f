/**
 * docs/alerts.yml (Prometheus alerting rules for SREs) names only metrics and labels this
 * server exports: each `chat_*`, `nodejs_*` and `process_*` series in an `expr` is a
 * metric of the registry /metrics serves (histograms by their `_bucket`/`_sum`/`_count`
 * series), and each label a selector matches on is one of that metric's labels.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/observability/metrics.ts';

const RULES = readFileSync(new URL('../../docs/alerts.yml', import.meta.url), 'utf8');

describe('docs/alerts.yml', () => {
  it('uses only exported metrics and their labels', () => {
    const metrics = new Metrics({ connections: () => 0, users: () => 0, pool: () => ({ total: 1, idle: 1, waiting: 0 }) });
    const exprs = [...RULES.matchAll(/^\s*expr:\s*(.+)$/gm)].map((m) => m[1]!);
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    expect([...RULES.matchAll(/^\s*- alert:/gm)]).toHaveLength(exprs.length);
    const used = new Set<string>();
    for (const expr of exprs) {
      for (const [, series, selector] of expr.matchAll(/\b((?:chat|nodejs|process)_[a-z0-9_]+)(?:\{([^}]*)\})?/g)) {
        const direct = metrics.registry.getSingleMetric(series!);
        const base = series!.replace(/_(bucket|sum|count)$/, '');
        const metric = direct ?? metrics.registry.getSingleMetric(base);
        expect(metric, `${series} in: ${expr}`).toBeDefined();
        if (!direct) expect(metric!.constructor.name, `${series}: only a histogram has ${series!.slice(base.length)}`).toBe('Histogram');
        used.add(base);
        const labels = (metric as unknown as { labelNames: string[] }).labelNames;
        for (const [, label] of (selector ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) expect(labels, `label ${label} of ${base} in: ${expr}`).toContain(label);
      }
    }
    expect(used.size).toBeGreaterThanOrEqual(8);
  });

  it('exports every chat_errors_total code it alerts on from the start, at 0 (rate() ignores a series\' first sample)', async () => {
    const metrics = new Metrics({ connections: () => 0, users: () => 0, pool: () => ({ total: 1, idle: 1, waiting: 0 }) });
    const codes = [...RULES.matchAll(/chat_errors_total\{code=~?"([^"]+)"\}/g)].flatMap((m) => m[1]!.split('|'));
    expect(codes).toEqual(expect.arrayContaining(['SERVICE_UNAVAILABLE', 'AUTH_UNAVAILABLE', 'INTERNAL_ERROR']));
    const text = await metrics.registry.metrics();
    for (const code of codes) expect(text, code).toMatch(new RegExp(`^chat_errors_total\\{code="${code}"\\} 0$`, 'm'));
  });
});
