/**
 * Audit 8 F17: an embedded (PGlite) server locks its DATA_DIR (`DATA_DIR/pgdata.lock`,
 * src/store/pgliteDb.ts). Server processes on one temp DATA_DIR: the second refuses to
 * start (exit 1, "in use by pid N") while the first runs; after the first stops (lock
 * removed) a new one starts; a lock file left by a dead PID is taken over with a warning.
 * In one process, a second open of the same directory is refused too; memory:// needs
 * no lock. No PostgreSQL or Redis needed.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Logger } from 'winston';
import { createPgliteDb, DataDirLockedError, FOREIGN_LOCK_STALE_MS, LOCK_REFRESH_MS, lockDataDir } from '../../src/store/pgliteDb.ts';
import { freePort, runToExit, spawnServer, type Proc } from '../helpers/scaleProcs.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'chat-emb-lock-'));
const lockFile = join(dataDir, 'pgdata.lock');
const procs: Proc[] = [];

/** Embedded server env on `dataDir` (no DATABASE_URL: serverEnv sets none). */
const embedded = async (): Promise<Record<string, string>> => ({ PORT: String(await freePort()), DATA_DIR: dataDir, LOG_LEVEL: 'warn', EMBEDDED_DATABASE: 'true' });

/** Start an embedded server and wait for /ready. */
async function start(): Promise<Proc> {
  const p = await spawnServer(await embedded(), 'src/server.ts', 90_000);
  procs.push(p);
  return p;
}

/** Run a server that should refuse to start; resolves its exit code (null: still running after `ms`, then killed by PID) and logs. */
async function refused(ms = 60_000): Promise<{ code: number | null; logs: string[] }> {
  return runToExit(await embedded(), ms);
}

/** The PID of a process that has exited. */
async function deadPid(): Promise<number> {
  const c = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

afterAll(async () => {
  for (const p of procs) await p.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('embedded DATA_DIR lock across processes', () => {
  it('a second server on the same DATA_DIR refuses to start naming the first one; after the first stops, a new one starts', async () => {
    const first = await start();
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${first.pid} ${hostname()}`);

    const second = await refused();
    expect(second.code).toBe(1);
    const line = second.logs.map((l) => JSON.parse(l) as { message: string; err?: string }).find((j) => j.message === 'cannot start');
    expect(line?.err).toBe(`embedded database ${join(dataDir, 'pgdata')} (DATA_DIR) is in use by pid ${first.pid} (lock file ${lockFile}); stop it first or use another DATA_DIR`);

    await first.stop();
    expect(await first.exited).toBe(0);
    expect(existsSync(lockFile)).toBe(false);

    const third = await start();
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${third.pid} ${hostname()}`);
    await third.stop();
    expect(existsSync(lockFile)).toBe(false);
  }, 240_000);

  it('a lock file of a dead PID is taken over with a warning', async () => {
    const dead = await deadPid();
    writeFileSync(lockFile, `${dead} ${hostname()}\n`);
    const p = await start();
    expect(readFileSync(lockFile, 'utf8').trim()).toBe(`${p.pid} ${hostname()}`);
    const warn = p.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((j) => /stale lock/.test(String(j.message)));
    expect(warn).toMatchObject({ level: 'warn', lockFile, stalePid: dead });
    await p.stop();
    expect(existsSync(lockFile)).toBe(false);
  }, 180_000);
});

describe('embedded DATA_DIR lock in one process', () => {
  it('refuses a second open of an open directory, allows it after close; memory:// is not locked', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'chat-emb-lock1-')), 'pgdata');
    const a = await createPgliteDb(dir);
    try {
      await expect(createPgliteDb(dir)).rejects.toThrow(DataDirLockedError);
      await expect(createPgliteDb(dir)).rejects.toThrow(`already open in this process (pid ${process.pid})`);
    } finally {
      await a.close();
    }
    expect(existsSync(`${dir}.lock`)).toBe(false);
    const b = await createPgliteDb(dir);
    await b.close();
    const m1 = await createPgliteDb(undefined);
    const m2 = await createPgliteDb(undefined);
    await Promise.all([m1.close(), m2.close()]);
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }, 120_000);
});

describe('embedded DATA_DIR lock written on another host', () => {
  it('is refused while refreshed, taken over once not refreshed for FOREIGN_LOCK_STALE_MS; the holder refreshes its lock', () => {
    const root = mkdtempSync(join(tmpdir(), 'chat-emb-lock2-'));
    const dir = join(root, 'pgdata');
    const lock = `${dir}.lock`;
    mkdirSync(root, { recursive: true });
    writeFileSync(lock, '4242 some-other-host\n');
    // Fresh (just written): refused, naming the host.
    expect(() => lockDataDir(dir)).toThrow(DataDirLockedError);
    expect(() => lockDataDir(dir)).toThrow(/in use by pid 4242 on host some-other-host .*refreshed 0 s ago/);
    // Not refreshed for longer than the staleness bound: taken over with a warning.
    const old = new Date(Date.now() - FOREIGN_LOCK_STALE_MS - 5000);
    utimesSync(lock, old, old);
    const warned: Record<string, unknown>[] = [];
    const logger = { warn: (_m: string, meta: Record<string, unknown>) => warned.push(meta) } as unknown as Logger;
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const release = lockDataDir(dir, logger);
      expect(readFileSync(lock, 'utf8').trim()).toBe(`${process.pid} ${hostname()}`);
      expect(warned[0]).toMatchObject({ lockFile: lock, stalePid: 4242, staleHost: 'some-other-host' });
      // The holder refreshes the mtime every LOCK_REFRESH_MS.
      utimesSync(lock, old, old);
      vi.advanceTimersByTime(LOCK_REFRESH_MS);
      expect(Date.now() - statSync(lock).mtimeMs).toBeLessThan(5000);
      release();
      expect(existsSync(lock)).toBe(false);
    } finally {
      vi.useRealTimers();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
