/**
 * The cluster server's life cycle as an operator sees it (audit 8 F1, F4, F10), on real
 * processes stopped by PID:
 * - F1: a worker killed with SIGKILL is re-forked every time, even when it was the only
 *   one (the primary used to exit 0 with no worker left); a crash loop (workers that cannot
 *   start) ends with exit code 1 and the `crash loop` log line.
 * - F10: /metrics aggregated by the primary never goes backwards when workers are
 *   re-forked (their last counters and histograms are kept), gauges are the live workers',
 *   and `process_start_time_seconds` (the primary's) is exported and stays put.
 * - F4: SIGTERM to the primary persists every connected user (and one within the grace
 *   period) offline in `user_status` with `lastSeen`.
 */
import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import type { TestDatabase } from '../helpers/db.ts';
import { Fixture, freePort, getJson, ROOT, scaleEnabled, seededCluster, serverEnv, sleep, teardownCluster, until, warnIfSkipped, workerPids, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-cluster-lifecycle.test.ts');

/** Kill `pid` with SIGKILL, then wait until /health answers from a worker that is not one of `gone` (returns its pid). */
async function killAndWaitReplacement(port: number, pid: number, gone: number[]): Promise<number> {
  process.kill(pid, 'SIGKILL');
  gone.push(pid);
  const [next] = await workerPids(port, 1, gone);
  await until('/ready 200 again', async () => (await getJson(port, '/ready')).status === 200, 30_000, 100);
  return next!;
}

/** GET /metrics as text. */
async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of series `series` (name and labels as printed) in `text`, or undefined. */
function valueOf(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  return undefined;
}

/** A counter's value in `text`; 0 when the series is absent (no live worker has counted it). */
const counter = (text: string, series: string): number => valueOf(text, series) ?? 0;

describe.skipIf(!scaleEnabled)('cluster server: one worker killed again and again (F1)', () => {
  let db: TestDatabase;
  let primary: Proc | undefined;

  beforeAll(async () => {
    ({ db, primary } = await seededCluster(1, [], [], { LOG_LEVEL: 'info' }));
  }, 120_000);

  afterAll(() => teardownCluster({ db, primary }), 60_000);

  it('re-forks the only worker after each kill -9; the primary stays up and /ready comes back', async () => {
    const p = primary!;
    const gone: number[] = [];
    let [pid] = await workerPids(p.port, 1);
    for (let i = 0; i < 3; i++) {
      pid = await killAndWaitReplacement(p.port, pid!, gone);
      expect(p.child.exitCode).toBeNull();
    }
    expect(p.logs.filter((l) => l.includes('worker exited unexpectedly; re-forking')).length).toBe(3);
    // Still alive a while later, serving.
    await sleep(1000);
    expect(p.child.exitCode).toBeNull();
    expect((await getJson(p.port, '/ready')).status).toBe(200);
  }, 120_000);
});

describe.skipIf(!scaleEnabled)('cluster server: workers that cannot start (F1)', () => {
  it('stops with a non-zero exit code and the crash-loop log line, never exit 0', async () => {
    // Nothing listens on this port: every worker fails its database connection and exits 1.
    const dead = await freePort();
    const env = serverEnv({ PORT: String(await freePort()), DATABASE_URL: `postgres://postgres@127.0.0.1:${dead}/none`, DB_CONNECT_TIMEOUT_MS: '300', CLUSTER_WORKERS: '1', LOG_LEVEL: 'info' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'cluster-server.ts'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: string[] = [];
    child.stdout.on('data', (b: Buffer) => logs.push(b.toString()));
    child.stderr.on('data', (b: Buffer) => logs.push(b.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const bound = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 100_000);
    try {
      const code = await exited;
      const text = logs.join('');
      expect(text).toContain('crash loop: too many worker exits');
      expect(code).toBe(1);
      // 1 worker: more than max(5, 2) exits within 60 s.
      expect(text.split('worker exited unexpectedly; re-forking').length - 1).toBe(5);
    } finally {
      clearTimeout(bound);
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    }
  }, 120_000);
});

describe.skipIf(!scaleEnabled)('cluster server: 2 workers, metrics across restarts (F10) and offline at shutdown (F4)', () => {
  const USERS = ['201', '202', '203', '204', '211', '212', '213'];
  let db: TestDatabase;
  let fx: Fixture;
  let primary: Proc | undefined;

  beforeAll(async () => {
    // A long grace period: a user who closed just before the shutdown is still within it.
    ({ db, fx, primary } = await seededCluster(2, USERS, Fixture.mutual(USERS), { OFFLINE_GRACE_MS: '60000', LOG_LEVEL: 'info' }));
  }, 120_000);

  afterAll(() => teardownCluster({ db, fx, primary }), 60_000);

  it('/metrics: counters never go down when workers are re-forked; gauges are the live workers\'; the start time is the primary\'s', async () => {
    const p = primary!;
    const clients: TestClient[] = [];
    // Spread over both workers (round-robin), several pings each.
    for (const u of ['201', '202', '203', '204']) clients.push(await fx.login(p.url, u));
    for (const c of clients) for (let i = 0; i < 3; i++) expect((await c.request({ type: 'ping' })).type).toBe('pong');
    for (const [i, c] of clients.entries()) expect((await c.request({ type: 'send_private_message', recipientId: i === 0 ? '202' : '201', content: 'counted' })).type).toBe('private_message_sent');

    const before = await scrape(p.port);
    const auth0 = valueOf(before, 'chat_frames_in_total{type="authenticate"}')!;
    const ping0 = valueOf(before, 'chat_frames_in_total{type="ping"}')!;
    const dmCount0 = valueOf(before, 'chat_command_duration_seconds_count{type="send_private_message"}')!;
    const stored0 = valueOf(before, 'chat_messages_stored_total')!;
    const start0 = valueOf(before, 'process_start_time_seconds');
    expect(auth0).toBe(4);
    expect(ping0).toBe(12);
    expect(dmCount0).toBe(4);
    expect(stored0).toBe(4);
    expect(valueOf(before, 'chat_open_connections')).toBe(4);

    // Kill both workers, one after the other: every count above was made by a worker now dead.
    const gone: number[] = [];
    for (const pid of await workerPids(p.port, 2)) await killAndWaitReplacement(p.port, pid, gone);
    await workerPids(p.port, 2, gone);

    const after = await scrape(p.port);
    expect(counter(after, 'chat_frames_in_total{type="authenticate"}')).toBeGreaterThanOrEqual(auth0);
    expect(counter(after, 'chat_frames_in_total{type="ping"}')).toBeGreaterThanOrEqual(ping0);
    expect(counter(after, 'chat_command_duration_seconds_count{type="send_private_message"}')).toBeGreaterThanOrEqual(dmCount0);
    expect(counter(after, 'chat_messages_stored_total')).toBeGreaterThanOrEqual(stored0);
    // Gauges: the dead workers' connections are not counted.
    expect(valueOf(after, 'chat_open_connections')).toBe(0);
    // The primary's start time, exported and unchanged by the workers' restarts.
    expect(start0).toBeGreaterThan(Date.now() / 1000 - 600);
    expect(valueOf(after, 'process_start_time_seconds')).toBe(start0);

    // New work adds on top.
    const c = await fx.login(p.url, '201');
    await c.request({ type: 'ping' });
    const later = await scrape(p.port);
    expect(valueOf(later, 'chat_frames_in_total{type="authenticate"}')).toBe(auth0 + 1);
    expect(valueOf(later, 'chat_frames_in_total{type="ping"}')).toBe(ping0 + 1);
    expect(valueOf(later, 'chat_open_connections')).toBe(1);
    await c.close();
  }, 180_000);

  it('SIGTERM to the primary: users connected to the workers (and one within the grace period) are persisted offline with lastSeen', async () => {
    const p = primary!;
    const a1 = await fx.login(p.url, '211');
    const a2 = await fx.login(p.url, '211');
    const b1 = await fx.login(p.url, '212');
    const b2 = await fx.login(p.url, '212');
    const g = await fx.login(p.url, '213');
    const pgc = new pg.Client({ connectionString: db.url! });
    await pgc.connect();
    try {
      const online = async () => (await pgc.query<{ n: number }>(`SELECT count(*)::int AS n FROM user_status WHERE user_id IN ('211','212','213') AND is_online`)).rows[0]!.n;
      await until('user_status online for 211, 212, 213', async () => (await online()) === 3, 10_000, 100);
      const closedAt = Date.now();
      await g.close(); // 213: within the 60 s grace period at shutdown
      await sleep(300);
      const stopAt = Date.now();
      p.kill('SIGTERM');
      const code = await Promise.race([p.exited, sleep(20_000).then(() => 'timeout' as const)]);
      expect(code).toBe(0);
      for (const c of [a1, a2, b1, b2]) expect(c.closeCode).toBe(1001);

      const { rows } = await pgc.query<{ user_id: string; is_online: boolean; last_seen: Date | null }>(
        `SELECT user_id, is_online, last_seen FROM user_status WHERE user_id IN ('211','212','213') ORDER BY user_id`,
      );
      expect(rows.map((r) => [r.user_id, r.is_online])).toEqual([
        ['211', false],
        ['212', false],
        ['213', false],
      ]);
      const seen = new Map(rows.map((r) => [r.user_id, r.last_seen!.getTime()]));
      // Connected users: last seen at the shutdown; the one in its grace period: when it closed.
      expect(seen.get('211')).toBeGreaterThanOrEqual(stopAt - 50);
      expect(seen.get('212')).toBeGreaterThanOrEqual(stopAt - 50);
      expect(seen.get('213')).toBeGreaterThanOrEqual(closedAt - 50);
      expect(seen.get('213')).toBeLessThan(stopAt);
      expect(p.logs.filter((l) => l.includes('presence: lastSeen persisted at shutdown')).length).toBeGreaterThanOrEqual(1);
    } finally {
      await pgc.end();
    }
  }, 60_000);
});
