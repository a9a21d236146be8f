/**
 * The cluster server (cluster-server.ts) with 2 workers and no Redis: ClusterBus relays
 * through the primary, presence is held by the primary. Every message reaches clients on
 * the other worker; a worker killed with SIGKILL is replaced and the other worker's
 * clients are unaffected (and see the dead worker's users go offline).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame, TestClient } from '../helpers/client.ts';
import type { TestDatabase } from '../helpers/db.ts';
import { Fixture, scaleEnabled, seededCluster, teardownCluster, until, warnIfSkipped, workerPids, type Proc } from '../helpers/scaleProcs.ts';

warnIfSkipped('scale-cluster.test.ts');

const N = 8;
const USERS = Array.from({ length: N }, (_, i) => String(101 + i));
let db: TestDatabase;
let fx: Fixture;
let primary: Proc;

/** Every client sends one DM to every other; each arrives exactly at its recipient. */
async function allPairs(clients: Map<string, TestClient>, tag: string): Promise<number> {
  let n = 0;
  for (const [from, c] of clients) {
    for (const to of clients.keys()) {
      if (to === from) continue;
      const ack = await c.request({ type: 'send_private_message', recipientId: to, content: `${tag} ${from}->${to}` });
      expect(ack.type).toBe('private_message_sent');
      const ev = await clients.get(to)!.next((f: Frame) => f.type === 'new_private_message' && f.message.id === ack.messageId, 5000);
      expect(ev.message.content).toBe(`${tag} ${from}->${to}`);
      n++;
    }
  }
  return n;
}

describe.skipIf(!scaleEnabled)('cluster server: 2 workers, no Redis', () => {
  beforeAll(async () => {
    ({ db, fx, primary } = await seededCluster(2, USERS, Fixture.mutual(USERS), { MESSAGE_RATE_LIMIT: '1000', OFFLINE_GRACE_MS: '300', LOG_LEVEL: 'info' }));
  }, 120_000);

  afterAll(() => teardownCluster({ db, fx, primary }), 60_000);

  it('shares the message-insert concurrency over the workers: each keeps 2 batches in flight (4 / 2)', () => {
    // One 'listening' line per worker (JSON logs; read by pattern, lines may arrive split).
    const inFlight = primary.logs.filter((l) => l.includes('"listening"')).map((l) => /"insertInFlight":(\d+)/.exec(l)?.[1]);
    expect(inFlight.length).toBeGreaterThanOrEqual(2);
    expect(inFlight.every((n) => n === '2')).toBe(true);
  });

  it('delivers every message between clients on different workers; kill -9 of a worker: replaced, the other worker\'s clients unaffected', async () => {
    const before = await workerPids(primary.port, 2);
    const clients = new Map<string, TestClient>();
    for (const u of USERS) clients.set(u, await fx.login(primary.url, u));
    expect(await allPairs(clients, 'first')).toBe(N * (N - 1));
    await new Promise((r) => setTimeout(r, 300));
    for (const c of clients.values()) c.clear();

    const victim = [...before][0]!;
    process.kill(victim, 'SIGKILL');
    // The victim's clients are dropped; which ones tells us the placement.
    const dropped = new Set<string>();
    await until('the victim worker\'s clients to be closed', async () => {
      for (const [u, c] of clients) if (c.closeCode !== undefined) dropped.add(u);
      return dropped.size > 0;
    }, 10_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    for (const [u, c] of clients) if (c.closeCode !== undefined) dropped.add(u);
    const survivors = new Map([...clients].filter(([u]) => !dropped.has(u)));
    // Both workers had clients, so the first round crossed workers.
    expect(dropped.size).toBeGreaterThan(0);
    expect(survivors.size).toBeGreaterThan(0);

    // Survivors see each dropped contact go offline (announced by the primary through a live worker), once.
    for (const s of survivors.values()) {
      for (const u of dropped) await s.next((f) => f.type === 'user_offline' && f.user.id === u, 8000);
    }
    // Survivors keep working with each other.
    await allPairs(survivors, 'after-kill');
    for (const s of survivors.values()) expect(s.closeCode).toBeUndefined();

    // A replacement worker appears.
    const after = await workerPids(primary.port, 2, [victim]);
    expect(after.has(victim)).toBe(false);
    expect([...after].filter((p) => !before.has(p)).length).toBe(1);
    expect(primary.logs.some((l) => l.includes('worker exited unexpectedly; re-forking'))).toBe(true);

    // The dropped users reconnect (round-robin spreads them over both workers) and everyone reaches everyone again.
    for (const u of dropped) clients.set(u, await fx.login(primary.url, u));
    expect(await allPairs(clients, 'again')).toBe(N * (N - 1));
  }, 120_000);

  it('serves /metrics aggregated over the workers', async () => {
    const res = await fetch(`http://127.0.0.1:${primary.port}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const open = /^chat_open_connections (\d+)/m.exec(text);
    expect(open).not.toBeNull();
    // All N clients are still open, spread over both workers: the sum is N.
    expect(Number(open![1])).toBe(N);
  });
});
