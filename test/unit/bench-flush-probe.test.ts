/**
 * The bench's disk flush probe (scripts/bench/flush-probe.ts): a worker thread timing a 4 KiB
 * write + fdatasync every few ms in a real directory; its window keeps only the flushes that
 * started inside it, the slow ones by its threshold; stop removes the probe's file.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FlushProbe } from '../../scripts/bench/flush-probe.ts';

const dir = mkdtempSync(join(tmpdir(), 'chat-flush-probe-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const now = () => performance.timeOrigin + performance.now();

describe('FlushProbe', () => {
  it('times flushes in the window, keeps those at or over the threshold, and removes its file on stop', async () => {
    // Threshold 0: every flush is "slow", so the slow list is the window's flushes.
    const probe = FlushProbe.start(dir, 5, 0);
    const t0 = now();
    await new Promise((r) => setTimeout(r, 800));
    const t1 = now();
    await new Promise((r) => setTimeout(r, 400)); // the worker posts every 200 ms
    expect(existsSync(join(dir, 'chat-flush-probe'))).toBe(true);
    const w = probe.window(t0, t1);
    // ~160 at one every 5 ms; a slow disk makes fewer, but some always complete in 0.8 s.
    expect(w.flushes).toBeGreaterThan(5);
    expect(w.flushes).toBeLessThanOrEqual(170);
    expect(w.slow).toHaveLength(w.flushes);
    for (const f of w.slow) {
      expect(f.atMs).toBeGreaterThanOrEqual(t0);
      expect(f.atMs).toBeLessThan(t1);
      expect(f.ms).toBeGreaterThan(0);
      expect(f.ms).toBeLessThanOrEqual(w.maxMs);
    }
    // A window before the probe started holds nothing.
    expect(probe.window(t0 - 10_000, t0 - 5000)).toEqual({ flushes: 0, slow: [], thresholdMs: 0, maxMs: 0 });
    await probe.stop();
    expect(existsSync(join(dir, 'chat-flush-probe'))).toBe(false);
  });

  it('counts only flushes at or over its threshold as slow', async () => {
    const probe = FlushProbe.start(dir, 5, 1e6);
    const t0 = now();
    await new Promise((r) => setTimeout(r, 500));
    const w = probe.window(t0, now());
    await probe.stop();
    expect(w.flushes).toBeGreaterThan(0);
    expect(w.slow).toEqual([]);
    expect(w.thresholdMs).toBe(1e6);
  });
});
