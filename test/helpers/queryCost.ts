/**
 * Query cost in integration tests, measured as rows read rather than time: the
 * statements a server runs while it answers a request are recorded, and each is re-run
 * under EXPLAIN ANALYZE; the rows its scan nodes returned or filtered out (times their
 * loops) are summed. The count is deterministic on PostgreSQL and PGlite alike, so a
 * bound on it can fail only when a plan reads more (audits 2 and 6 of 2026-12).
 */
import type { Queryable } from '../../src/store/db.ts';
import { startServer, type TestServer } from './server.ts';

/** One statement the server ran: its SQL text and parameters. */
export interface RecordedQuery {
  sql: string;
  params: readonly unknown[];
}

/** What one plan read (see the module doc). */
export interface PlanCost {
  /** Rows its scan nodes returned or filtered out, times loops, all relations. */
  rowsRead: number;
  /** The same, by relation name. */
  byRelation: Record<string, number>;
  /** Relations it read by sequential scan (one entry per scan node). */
  seqScans: string[];
}

/** Records the reads (`WITH`/`SELECT`) run through a Queryable while a request is measured. */
export interface QueryRecorder {
  /**
   * Run `fn` and resolve its value with the reads run meanwhile (of every caller of the
   * wrapped Queryable: measure one request at a time).
   */
  during<T>(fn: () => Promise<T>): Promise<{ value: T; queries: RecordedQuery[] }>;
}

/**
 * Wrap `db.query` (the object the server's stores use) so that {@link QueryRecorder.during}
 * sees what it runs. Call once per Queryable.
 */
export function recordQueries(db: Queryable): QueryRecorder {
  let recording: RecordedQuery[] | null = null;
  const orig = db.query.bind(db);
  (db as { query: Queryable['query'] }).query = ((sql: string, params?: readonly unknown[], opts?: unknown) => {
    if (recording && /^\s*(WITH|SELECT)/i.test(sql)) recording.push({ sql, params: params ?? [] });
    return (orig as (a: string, b?: readonly unknown[], c?: unknown) => Promise<unknown>)(sql, params, opts);
  }) as Queryable['query'];
  return {
    async during(fn) {
      const queries: RecordedQuery[] = [];
      recording = queries;
      try {
        return { value: await fn(), queries };
      } finally {
        recording = null;
      }
    },
  };
}

/** EXPLAIN ANALYZE `sql` with `params` on `db` and measure what its plan read. */
export async function planCost(db: Queryable, sql: string, params: readonly unknown[]): Promise<PlanCost> {
  const { rows } = await db.query<Record<string, unknown>>(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params);
  let plan = Object.values(rows[0]!)[0];
  if (typeof plan === 'string') plan = JSON.parse(plan);
  const cost: PlanCost = { rowsRead: 0, byRelation: {}, seqScans: [] };
  const walk = (n: Record<string, any>): void => {
    if (String(n['Node Type']).includes('Scan')) {
      const read = (Number(n['Actual Rows'] ?? 0) + Number(n['Rows Removed by Filter'] ?? 0) + Number(n['Rows Removed by Index Recheck'] ?? 0)) * Number(n['Actual Loops'] ?? 1);
      cost.rowsRead += read;
      const rel = n['Relation Name'] as string | undefined;
      if (rel) cost.byRelation[rel] = (cost.byRelation[rel] ?? 0) + read;
      if (n['Node Type'] === 'Seq Scan' && rel) cost.seqScans.push(rel);
    }
    for (const child of (n.Plans as Record<string, any>[] | undefined) ?? []) walk(child);
  };
  walk((plan as Record<string, any>[])[0]!.Plan);
  return cost;
}

/**
 * A real server (test/helpers/server.ts) with `env`, whose stores' reads are recorded:
 * the setup of the query-cost tests. Stop it with `s.close()`.
 */
export async function startMeasuredServer(env: Record<string, string> = {}): Promise<{ s: TestServer; recorder: QueryRecorder }> {
  const s = await startServer(env);
  return { s, recorder: recordQueries(s.app.db) };
}
