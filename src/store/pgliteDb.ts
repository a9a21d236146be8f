/**
 * Embedded adapter: PGlite (PostgreSQL in WebAssembly), one connection, data in a
 * directory (or in memory for tests). Fine for one process; not for cluster mode.
 * PGlite has no lock of its own: two processes opening one directory both start, and
 * what one of them writes is lost. So the directory is locked by {@link lockDataDir}
 * for as long as the database is open.
 */
import { PGlite } from '@electric-sql/pglite';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import type { Logger } from 'winston';
import { createLogger } from '../observability/logger.ts';
import type { Db, QueryResult } from './db.ts';

/** Options of {@link createPgliteDb}. */
export interface PgliteOptions {
  /** Where a stale lock's takeover is logged (default: a warn-level JSON logger). */
  logger?: Logger;
}

/** Another process (or another database of this one) holds the data directory. */
export class DataDirLockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataDirLockedError';
  }
}

/** Lock files held by this process (a second open in the same process is refused too). */
const held = new Set<string>();
/** A lock file without a PID younger than this is being written by its owner, ms. */
const FRESH_EMPTY_LOCK_MS = 5000;

/** The holder of a lock refreshes its file's mtime this often, ms. */
export const LOCK_REFRESH_MS = 10_000;
/**
 * A lock written on another host (whose PID cannot be checked: a container recreated with
 * a new hostname on the same volume) is stale once not refreshed for this long, ms: 12
 * refresh intervals, so clocks of the two hosts may differ by up to about 110 s.
 */
export const FOREIGN_LOCK_STALE_MS = 120_000;

/** True when process `pid` exists on this host (EPERM: it exists, owned by someone else). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Age of a file by its mtime, ms (Infinity when gone). */
function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return Infinity;
  }
}

/** Remove a file; a missing one is fine. */
function rmQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** The lock file's owner, or undefined when empty or unreadable. */
function readOwner(path: string): { pid: number; host: string } | undefined {
  try {
    const [pid, host] = readFileSync(path, 'utf8').trim().split(/\s+/);
    return Number(pid) > 0 ? { pid: Number(pid), host: host ?? '' } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Take the exclusive lock of an embedded data directory: the file `<dataDir>.lock`,
 * created with O_EXCL, holding `<pid> <hostname>`, its mtime refreshed every
 * {@link LOCK_REFRESH_MS} while held. A lock whose PID is not running on this host (a
 * process killed with SIGKILL, a crash), or one written on another host and not refreshed
 * for {@link FOREIGN_LOCK_STALE_MS}, is taken over with a warning; one of a live process,
 * of this process, or a fresh one of another host is refused with {@link DataDirLockedError}
 * naming the PID (and host) and the lock file. Also removed at process exit. Resolves the
 * release function (idempotent).
 */
export function lockDataDir(dataDir: string, logger?: Logger): () => void {
  const path = `${dataDir}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  const where = `embedded database ${dataDir} (DATA_DIR)`;
  if (held.has(path)) throw new DataDirLockedError(`${where} is already open in this process (pid ${process.pid})`);
  const me = `${process.pid} ${hostname()}\n`;
  /** Create the lock file (O_EXCL); false when it exists. */
  const create = (): boolean => {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
    try {
      writeSync(fd, me);
    } finally {
      closeSync(fd);
    }
    return true;
  };
  for (let attempt = 0; !create(); attempt++) {
    if (attempt >= 3) throw new DataDirLockedError(`${where} is being opened by another process (lock file ${path})`);
    const owner = readOwner(path);
    if (!owner) {
      if (ageMs(path) < FRESH_EMPTY_LOCK_MS) throw new DataDirLockedError(`${where} is being opened by another process (lock file ${path})`);
    } else if (owner.host && owner.host !== hostname()) {
      const age = ageMs(path);
      if (age < FOREIGN_LOCK_STALE_MS) {
        throw new DataDirLockedError(
          `${where} is in use by pid ${owner.pid} on host ${owner.host} (lock file ${path}, refreshed ${Math.max(0, Math.round(age / 1000))} s ago); ` +
            `it is taken over once not refreshed for ${FOREIGN_LOCK_STALE_MS / 1000} s, or delete the lock file if that process is gone`,
        );
      }
    } else if (owner.pid !== process.pid && alive(owner.pid)) {
      throw new DataDirLockedError(`${where} is in use by pid ${owner.pid} (lock file ${path}); stop it first or use another DATA_DIR`);
    }
    // Stale. Take it over under a second O_EXCL file, so two starters cannot both remove it
    // (one removing the lock the other has just created).
    const mutex = `${path}.takeover`;
    try {
      closeSync(openSync(mutex, 'wx'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (ageMs(mutex) < FRESH_EMPTY_LOCK_MS) throw new DataDirLockedError(`${where} is being opened by another process (lock file ${path})`);
      rmQuiet(mutex); // left by a starter that died while taking over
      continue;
    }
    try {
      if (readOwner(path)?.pid !== owner?.pid) continue; // changed meanwhile: look again
      const foreign = owner?.host && owner.host !== hostname() ? { staleHost: owner.host, notRefreshedMs: Math.round(ageMs(path)) } : {};
      (logger ?? createLogger('warn')).warn('taking over a stale lock of the embedded database (its process is gone)', { lockFile: path, stalePid: owner?.pid, ...foreign });
      rmQuiet(path);
    } finally {
      rmQuiet(mutex);
    }
  }
  held.add(path);
  const refresh = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      // The file is gone (deleted by hand): nothing to refresh.
    }
  }, LOCK_REFRESH_MS);
  refresh.unref();
  const release = (): void => {
    if (!held.delete(path)) return;
    clearInterval(refresh);
    process.off('exit', release);
    if (readOwner(path)?.pid === process.pid) rmQuiet(path);
  };
  process.on('exit', release);
  return release;
}

/**
 * Open (creating if needed) an embedded database. `dataDir` undefined = in memory (no lock).
 * Throws {@link DataDirLockedError} if the directory is held by another process (or
 * already open in this one), or PGlite's error if it is not a PGlite data directory.
 * close() releases the lock.
 */
export async function createPgliteDb(dataDir: string | undefined, opts: PgliteOptions = {}): Promise<Db> {
  const release = dataDir ? lockDataDir(dataDir, opts.logger) : () => {};
  let pg: PGlite;
  try {
    pg = await PGlite.create(dataDir);
  } catch (err) {
    release();
    throw err;
  }
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
      try {
        await pg.close();
      } finally {
        release();
      }
    },
  };
}
