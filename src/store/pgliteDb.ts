/**
 * Embedded adapter: PGlite (PostgreSQL in WebAssembly), one connection, data in a
 * directory (or in memory for tests). Fine for one process; not for cluster mode.
 */
import { PGlite } from '@electric-sql/pglite';
import type { Db, QueryResult } from './db.ts';

/**
 * Open (creating if needed) an embedded database. `dataDir` undefined = in memory.
 * Throws if the directory is held by another process or is not a PGlite data directory.
 */
export async function createPgliteDb(dataDir: string | undefined): Promise<Db> {
  const pg = await PGlite.create(dataDir);
  const toResult = <T>(r: { rows: unknown[]; affectedRows?: number }): QueryResult<T> => ({
    rows: r.rows as T[],
    rowCount: r.affectedRows || r.rows.length,
  });
  return {
    kind: 'pglite',
    query: async (sql, params) => toResult(await pg.query(sql, params as unknown[] | undefined)),
    transaction: (fn) =>
      pg.transaction((tx) => fn({ query: async (sql, params) => toResult(await tx.query(sql, params as unknown[] | undefined)) })),
    async ping() {
      try {
        await pg.query('SELECT 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await pg.close();
    },
  };
}
