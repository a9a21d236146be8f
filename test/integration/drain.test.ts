/**
 * Graceful drain (issue "Delivery guarantees" item 6, PROTOCOL §2.3 1001) on a real server
 * process: SIGTERM → /ready 503 at once, new upgrades refused, open connections closed
 * 1001 after the commands already received are answered, exit within DRAIN_TIMEOUT_MS.
 * Every acknowledged message is stored; nothing unacknowledged is.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtKey } from '../../src/auth/keys.ts';
import { signToken } from '../../src/auth/tokens.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { addFollows, upsertUsers } from '../../src/store/devData.ts';
import { createPgDb } from '../../src/store/pgDb.ts';
import { startServer, type ServerProcess } from '../../scripts/lib/server.ts';
import { TestClient } from '../helpers/client.ts';
import { createTestDatabase, onPostgres, type TestDatabase } from '../helpers/db.ts';

const secret = randomBytes(48).toString('base64');
let database: TestDatabase;
let server: ServerProcess;

describe.skipIf(!onPostgres)('drain on SIGTERM (needs PostgreSQL: a server process shares the database)', () => {
  beforeAll(async () => {
    database = await createTestDatabase();
    const db = createPgDb({ connectionString: database.url, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
    await upsertUsers(db, [{ id: '1', username: 'a' }, { id: '2', username: 'b' }]);
    await addFollows(db, [['1', '2']]);
    await db.close();
    server = await startServer(
      { DATABASE_URL: database.url!, JWT_SECRET: secret, CHAT_ENCRYPTION_KEY: randomBytes(32).toString('hex'), LOG_LEVEL: 'warn', DRAIN_TIMEOUT_MS: '3000', MESSAGE_RATE_LIMIT: '1000' },
      { cwd: process.cwd() },
    );
  });
  afterAll(async () => {
    await server?.stop('SIGKILL', 2000);
    await database?.drop();
  });

  it('answers in-flight commands, closes 1001, refuses new upgrades, exits in time', async () => {
    const key = jwtKey(secret, 'base64');
    const c = await TestClient.connect(server.wsUrl);
    expect((await c.request({ type: 'authenticate', token: signToken(key, '1') })).type).toBe('auth_success');
    const acked = new Set<string>();
    c.ws.on('message', (d) => {
      const f = JSON.parse(d.toString());
      if (f.type === 'private_message_sent') acked.add(f.clientMessageId);
    });
    for (let i = 0; i < 50; i++) c.send({ type: 'send_private_message', recipientId: '2', content: `m${i}`, clientMessageId: `d${i}` });
    const t0 = Date.now();
    process.kill(server.pid, 'SIGTERM');
    let ready503 = -1;
    for (let i = 0; i < 100 && ready503 < 0; i++) {
      const r = await fetch(`${server.httpUrl}/ready`).catch(() => null);
      if (r && r.status === 503) ready503 = Date.now() - t0;
      else await new Promise((res) => setTimeout(res, 10));
    }
    expect(ready503).toBeGreaterThanOrEqual(0);
    expect(ready503).toBeLessThan(1000);
    await expect(TestClient.connect(server.wsUrl)).rejects.toThrow();
    const closed = await c.closed;
    expect(closed.code).toBe(1001);
    const exited = await server.stop('SIGTERM', 5000);
    const exitMs = Date.now() - t0;
    expect(exited).toBe(true);
    expect(exitMs).toBeLessThan(3000 + 2000);
    // acknowledged ⇒ stored exactly once; unacknowledged ⇒ not stored
    const db = createPgDb({ connectionString: database.url, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 }, createLogger('error', { silent: true }));
    const { rows } = await db.query<{ client_message_id: string }>('SELECT client_message_id FROM private_messages');
    await db.close();
    const stored = rows.map((r) => r.client_message_id);
    expect(new Set(stored).size).toBe(stored.length);
    expect(new Set(stored)).toEqual(acked);
    console.log(`drain: /ready 503 after ${ready503} ms; exit after ${exitMs} ms; ${acked.size}/50 in-flight commands answered before close`);
  });
});
