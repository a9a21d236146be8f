/**
 * DESIGN "Failure behaviour", PostgreSQL down, in the shapes outage.test.ts (refused and
 * reset connections) does not cover: backends killed with pg_terminate_backend (as on a
 * restart or failover) while sends run, against a server process, which must survive and
 * answer each send with an ack or SERVICE_UNAVAILABLE; a black-holed database
 * (connections open, no answers); a database refusing connections (ALLOW_CONNECTIONS
 * false, SQLSTATE 55000). Each: SERVICE_UNAVAILABLE (§2.2), never INTERNAL_ERROR; /ready
 * 503; recovery by itself. Only private test databases are touched.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from '../helpers/db.ts';
import { Fixture, freePort, spawnServer, type Proc } from '../helpers/scaleProcs.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';
import { databaseBehindProxy, type FreezableProxy } from '../helpers/tcpProxy.ts';
import { makeGroup, say } from '../helpers/groupkit.ts';
import { httpGet, waitFor } from '../helpers/wire.ts';

const ready = async (port: number) => (await httpGet(port, '/ready')).status;

/** Terminate every backend of database `name` but the admin's own; resolves how many. */
async function terminateAll(admin: pg.Client, name: string): Promise<number> {
  const { rows } = await admin.query(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [name]);
  return rows[0].n as number;
}

describe.skipIf(!onPostgres)('pg_terminate_backend against a server process', () => {
  let db: TestDatabase;
  let fx: Fixture;
  let p: Proc;
  let admin: pg.Client;
  beforeAll(async () => {
    db = await createTestDatabase();
    fx = new Fixture(db.url!);
    await fx.seed(['1', '2', '3', '4']);
    p = await spawnServer({ PORT: String(await freePort()), DATABASE_URL: db.url!, FOLLOW_POLICY: 'none', MESSAGE_RATE_LIMIT: '1000', LOG_LEVEL: 'warn' });
    admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
  }, 60_000);
  afterAll(async () => {
    await admin?.end().catch(() => {});
    await fx?.closeAll();
    await p?.stop();
    await db?.drop();
  });

  it('survives repeated terminations during sends and /ready probes: every send acked (and stored) or SERVICE_UNAVAILABLE', async () => {
    const name = new URL(db.url!).pathname.slice(1);
    const senders = await Promise.all([fx.login(p.url, '1'), fx.login(p.url, '3'), fx.login(p.url, '4')]);
    const codes: Record<string, number> = {};
    const acked: string[] = [];
    let killed = 0;
    for (let round = 0; round < 6 && p.child.exitCode === null; round++) {
      const replies: Promise<Frame>[] = [];
      for (let i = 0; i < 8; i++) {
        senders.forEach((c, k) => replies.push(c.request({ type: 'send_private_message', recipientId: '2', content: 'x', clientMessageId: `t${round}-${k}-${i}` }, 15_000)));
      }
      const probes = Array.from({ length: 3 }, () => httpGet(p.port, '/ready').catch(() => ({ status: -1 })));
      for (let i = 0; i < 5; i++) {
        killed += await terminateAll(admin, name);
        await sleep(30);
      }
      for (const f of await Promise.all(replies)) {
        const k = f.type === 'error' ? f.code : f.type;
        codes[k] = (codes[k] ?? 0) + 1;
        if (f.type === 'private_message_sent') acked.push(f.clientMessageId);
      }
      await Promise.all(probes);
      await sleep(200);
    }
    await sleep(500);
    expect(killed).toBeGreaterThan(0);
    // Before the fix the process died (exit 1) on an 'error' event with no listener (57P01).
    expect({ exitCode: p.child.exitCode, signal: p.child.signalCode }).toEqual({ exitCode: null, signal: null });
    expect(Object.keys(codes).filter((k) => k !== 'private_message_sent' && k !== 'SERVICE_UNAVAILABLE'), JSON.stringify(codes)).toEqual([]);
    const admin2 = new pg.Client({ connectionString: db.url });
    await admin2.connect();
    const { rows } = await admin2.query(`SELECT client_message_id AS c FROM private_messages WHERE client_message_id = ANY($1)`, [acked]);
    await admin2.end();
    expect(rows.length).toBe(acked.length);
    expect((await senders[0]!.request({ type: 'send_private_message', recipientId: '2', content: 'after' })).type).toBe('private_message_sent');
  }, 90_000);
});

describe.skipIf(!onPostgres)('PostgreSQL black-holed (connections open, no answers)', () => {
  let s: TestServer;
  let proxy: FreezableProxy;
  beforeAll(async () => {
    const behind = await databaseBehindProxy();
    proxy = behind.proxy;
    s = await startServer(
      { DATABASE_URL: behind.url, DB_CONNECT_TIMEOUT_MS: '1000', DB_STATEMENT_TIMEOUT_MS: '2000', DB_IDLE_TIMEOUT_MS: '20000', RELATION_CACHE_MS: '60000' },
      { database: behind.database },
    );
    await s.users('1', '2');
    await s.follow(['1', '2']);
  });
  afterAll(async () => {
    proxy?.thaw();
    await s?.close();
    await proxy?.close();
  });

  it('a send and a read get SERVICE_UNAVAILABLE within seconds; /ready 503; recovers once the route returns', async () => {
    const a = await s.login('1');
    const b = await s.login('2');
    expect((await a.request({ type: 'send_private_message', recipientId: '2', content: 'before' })).type).toBe('private_message_sent');
    await b.next('new_private_message');
    proxy.freeze();
    // Pooled connections are still open: the statement is sent and never answered ("Query read timeout").
    const r = await a.request({ type: 'send_private_message', recipientId: '2', content: 'during', clientMessageId: 'bh-1' }, 20_000);
    expect(r).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
    await waitFor(async () => (await ready(s.port)) === 503, 6000, '/ready 503', 200);
    expect(await a.request({ type: 'get_private_messages', recipientId: '2', limit: 5 }, 20_000)).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
    proxy.thaw();
    await waitFor(async () => (await ready(s.port)) === 200, 15_000, '/ready 200 again', 200);
    expect((await a.request({ type: 'send_private_message', recipientId: '2', content: 'after', clientMessageId: 'bh-2' }, 10_000)).type).toBe('private_message_sent');
  }, 90_000);
});

describe.skipIf(!onPostgres)('database refusing connections (ALLOW_CONNECTIONS false)', () => {
  let s: TestServer;
  let admin: pg.Client;
  let name: string;
  beforeAll(async () => {
    const database = await createTestDatabase();
    name = new URL(database.url!).pathname.slice(1);
    s = await startServer({ DB_CONNECT_TIMEOUT_MS: '1000', DB_STATEMENT_TIMEOUT_MS: '2000', RELATION_CACHE_MS: '60000', FOLLOW_POLICY: 'none' }, { database });
    await s.users('1', '2');
    admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`).catch(() => {});
    await admin?.end().catch(() => {});
    await s?.close();
  });

  it('SERVICE_UNAVAILABLE (not INTERNAL_ERROR), nothing stored, /ready 503; recovers once allowed again', async () => {
    const a = await s.login('1');
    expect((await a.request({ type: 'send_private_message', recipientId: '2', content: 'x' })).type).toBe('private_message_sent');
    await admin.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    await terminateAll(admin, name);
    await waitFor(async () => (await ready(s.port)) === 503, 6000, '/ready 503', 200);
    const r = await a.request({ type: 'send_private_message', recipientId: '2', content: 'during', clientMessageId: 'refused-1' }, 15_000);
    expect(r).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
    await admin.query(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
    await waitFor(async () => (await ready(s.port)) === 200, 10_000, '/ready 200 again', 200);
    const after = await a.request({ type: 'send_private_message', recipientId: '2', content: 'after', clientMessageId: 'refused-1' });
    expect(after.type).toBe('private_message_sent');
    expect(after.duplicate).toBeUndefined();
  }, 60_000);
});

describe.skipIf(!onPostgres)('a lookup that fails inside a send is not reported as a missing message', () => {
  it('a replied-to lookup, and the member check of a read receipt and a deletion, failing past the statement timeout: SERVICE_UNAVAILABLE, not NOT_FOUND', async () => {
    const s = await startServer({ FOLLOW_POLICY: 'none', DB_STATEMENT_TIMEOUT_MS: '400' });
    const admin = new pg.Client({ connectionString: s.database.url });
    await admin.connect();
    try {
      const g = await makeGroup(s, { members: 1 });
      const m = await say(g.owner, g.groupId, 'the original');
      await admin.query('BEGIN');
      await admin.query('LOCK TABLE private_messages IN ACCESS EXCLUSIVE MODE');
      const r = await g.owner.c.request({ type: 'send_group_message', groupId: g.groupId, content: 'a reply', replyTo: m.id });
      await admin.query('ROLLBACK');
      expect(r).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
      // With the table back, the same send is stored.
      expect((await g.owner.c.request({ type: 'send_group_message', groupId: g.groupId, content: 'a reply', replyTo: m.id })).type).toBe('group_message_sent');
      // The member check of a read receipt and of a deletion: the same (it said NOT_FOUND,
      // and a client drops a message it is told is gone).
      const reader = g.members[0]!.c;
      await admin.query('BEGIN');
      await admin.query('LOCK TABLE group_members IN ACCESS EXCLUSIVE MODE');
      const read = await reader.request({ type: 'mark_message_read', messageId: m.id });
      const del = await g.owner.c.request({ type: 'delete_group_message', messageId: m.id });
      await admin.query('ROLLBACK');
      expect(read).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
      expect(del).toMatchObject({ type: 'error', code: 'SERVICE_UNAVAILABLE' });
      expect((await reader.request({ type: 'mark_message_read', messageId: m.id })).type).toBe('message_marked_read');
    } finally {
      await admin.end();
      await s.close();
    }
  });
});
