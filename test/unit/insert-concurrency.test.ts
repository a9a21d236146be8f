/** insertConcurrency: DB_INSERT_CONCURRENCY, else 4 per lone process, shared out over cluster workers. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_INSERT_CONCURRENCY, insertConcurrency } from '../../src/store/index.ts';

describe('insertConcurrency', () => {
  it('a lone process keeps the default, whatever CLUSTER_WORKERS says', () => {
    expect(insertConcurrency(0, false, 8)).toBe(DEFAULT_INSERT_CONCURRENCY);
    expect(DEFAULT_INSERT_CONCURRENCY).toBe(4);
  });

  it('cluster workers share the default out: 2 workers → 2 each, 3 → 1, 8 → at least 1, 1 → 4', () => {
    expect(insertConcurrency(0, true, 2)).toBe(2);
    expect(insertConcurrency(0, true, 3)).toBe(1);
    expect(insertConcurrency(0, true, 8)).toBe(1);
    expect(insertConcurrency(0, true, 1)).toBe(4);
  });

  it('DB_INSERT_CONCURRENCY > 0 wins in both', () => {
    expect(insertConcurrency(6, true, 2)).toBe(6);
    expect(insertConcurrency(1, false, 1)).toBe(1);
  });
});
