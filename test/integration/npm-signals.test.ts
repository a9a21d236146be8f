/**
 * `npm start` passes SIGTERM on to the server (audit 8, F3): the start scripts `exec` their
 * command, so a supervisor that signals npm (a container's CMD, systemd) gets a drained
 * server that exits, not an orphan still holding the port. On the embedded database, as
 * `npm install && npm start` runs on a bare machine.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase } from '../helpers/db.ts';
import { Fixture, freePort, scaleEnabled, spawnServer, until } from '../helpers/scaleProcs.ts';
import { httpGet } from '../helpers/wire.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), 'chat-npm-signals-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm start and signals', () => {
  it('SIGTERM to npm: the server drains and exits; the port is closed', async () => {
    const port = await freePort();
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
    const npm = spawn('npm', ['start'], { cwd: root, env, stdio: 'ignore' });
    let serverPid = 0;
    try {
      await until('the server answers /health', async () => {
        const r = await httpGet(port, '/health').catch(() => undefined);
        if (r?.status === 200) serverPid = JSON.parse(r.text).pid as number;
        return serverPid || undefined;
      }, 60_000, 250);
      expect(serverPid).not.toBe(npm.pid);
      npm.kill('SIGTERM');
      await until('the server process is gone', async () => !alive(serverPid) || undefined, 15_000, 100);
      expect((await httpGet(port, '/live').catch((e: NodeJS.ErrnoException) => ({ status: e.code }))).status).toBe('ECONNREFUSED');
    } finally {
      if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
      if (npm.exitCode === null) npm.kill('SIGKILL');
    }
  }, 90_000);
});

describe.skipIf(!scaleEnabled)('Ctrl-C', () => {
  it('one Ctrl-C delivered twice at once (under npm: the terminal\'s and npm\'s copy) drains: 1001 and exit 0, not an immediate exit', async () => {
    const db = await createTestDatabase();
    const fx = new Fixture(db.url!);
    const p = await spawnServer({ PORT: String(await freePort()), DATABASE_URL: db.url!, DRAIN_TIMEOUT_MS: '3000', LOG_LEVEL: 'info' });
    try {
      await fx.seed(['1']);
      const c = await fx.login(p.url, '1');
      p.kill('SIGINT');
      // The copy comes a moment later (two pending signals of one kind would merge into one).
      await until('draining', () => p.logs.some((l) => l.includes('"draining"')) || undefined, 10_000, 5);
      p.kill('SIGINT');
      expect(await p.exited).toBe(0);
      expect((await c.closed).code).toBe(1001);
      expect(p.logs.some((l) => l.includes('second SIGINT'))).toBe(false);
    } finally {
      await fx.closeAll();
      await p.stop(5000);
      await db.drop();
    }
  }, 90_000);
});
