/**
 * The production build (`npm run build`, scripts/lib/bundle.ts) run as `npm run start:prod`
 * and `start:cluster:prod` run it: plain node with start:prod's flags, no tsx. It finds
 * `sql/` two levels up, migrates, serves /ready and /metrics, delivers a DM, and stops on
 * SIGTERM with exit 0; the bundled cluster server forks the bundled server beside it.
 * Until now only the bench ran the build.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleServer } from '../../scripts/lib/bundle.ts';
import { prodNodeFlags } from '../../scripts/lib/server.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { Fixture, freePort, getJson, ROOT, scaleEnabled, spawnServer, warnIfSkipped, workerPids, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('prod-build.test.ts');

/** Two levels below the repo root, like dist/node/ (the server resolves ../../sql/). */
const OUT = `.tmp/test-prod-build-${process.pid}`;
let db: TestDatabase;
let fx: Fixture;
const procs: Proc[] = [];

describe.skipIf(!scaleEnabled)('production build', () => {
  beforeAll(async () => {
    await bundleServer(ROOT, { server: 'src/server.ts', 'cluster-server': 'cluster-server.ts' }, OUT);
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['301', '302'], Fixture.mutual(['301', '302']));
  }, 120_000);

  afterAll(async () => {
    await fx?.closeAll();
    for (const p of procs) await p.stop(10_000);
    await db?.drop();
    rmSync(join(ROOT, OUT), { recursive: true, force: true });
  }, 60_000);

  /** Log in both users on `url`, send one DM, expect it delivered. */
  async function dm(url: string): Promise<void> {
    const a = await fx.login(url, '301');
    const b = await fx.login(url, '302');
    const ack = await a.request({ type: 'send_private_message', recipientId: '302', content: 'from the build' });
    expect(ack.type).toBe('private_message_sent');
    const ev = await b.next((f) => f.type === 'new_private_message' && f.message.id === ack.messageId, 5000);
    expect(ev.message.content).toBe('from the build');
  }

  it('server.mjs: migrates, serves /ready, /metrics and a DM, exits 0 on SIGTERM', async () => {
    const p = await spawnServer({ PORT: String(await freePort()), DATABASE_URL: db.url! }, `${OUT}/server.mjs`, 60_000, prodNodeFlags(ROOT));
    procs.push(p);
    expect((await getJson(p.port, '/ready')).status).toBe(200);
    await dm(p.url);
    expect((await getJson(p.port, '/metrics')).status).toBe(200);
    await fx.closeAll();
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 60_000);

  it('cluster-server.mjs forks 2 workers of the bundled server; a DM between them; exits 0 on SIGTERM', async () => {
    const p = await spawnServer({ PORT: String(await freePort()), DATABASE_URL: db.url!, CLUSTER_WORKERS: '2' }, `${OUT}/cluster-server.mjs`, 90_000, prodNodeFlags(ROOT));
    procs.push(p);
    await workerPids(p.port, 2);
    await dm(p.url);
    await fx.closeAll();
    p.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 120_000);
});
