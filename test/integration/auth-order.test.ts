/**
 * PROTOCOL §3: `auth_success` is the first frame after `connected`, even while events for
 * the user arrive during admission (they follow it); a lookup that could not run
 * (AUTH_UNAVAILABLE) does not count toward the 5 failures that close 4401.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, ConfigError } from '../../src/config.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  // With Redis, admission awaits real I/O (subscribe, presence), so events can arrive during it.
  s = await startServer({
    FOLLOW_POLICY: 'none',
    MAX_CONNECTIONS_PER_USER: '50',
    REDIS_URL: process.env.TEST_REDIS_URL,
    REDIS_KEY_PREFIX: `t${process.pid}${Date.now()}:`,
  });
  await s.users('1', '2');
});
afterAll(() => s?.close());

describe('authentication ordering and outage accounting', () => {
  it('sends auth_success before any event that arrived during admission', async () => {
    const sender = await s.login('2');
    let sending = true;
    const flood = (async () => {
      for (let i = 0; i < 2000 && sending; i++) await sender.request({ type: 'send_private_message', recipientId: '1', content: `f${i}` });
    })();
    for (let n = 0; n < 15; n++) {
      const c = await s.connect();
      c.send({ type: 'authenticate', token: s.token('1') });
      const first = await c.next(() => true);
      expect(first.type).toBe('auth_success');
      await c.next('new_private_message'); // events do flow once authenticated
      await c.close();
    }
    sending = false;
    await flood;
  });

  it('does not count AUTH_UNAVAILABLE toward the 4401 limit', async () => {
    const c = await s.connect();
    await s.app.db.query('ALTER TABLE jwt_revocation RENAME TO jwt_revocation_x');
    try {
      for (let i = 0; i < 6; i++) expect((await c.request({ type: 'authenticate', token: s.token('1') })).code).toBe('AUTH_UNAVAILABLE');
    } finally {
      await s.app.db.query('ALTER TABLE jwt_revocation_x RENAME TO jwt_revocation');
    }
    expect(c.closeCode).toBeUndefined();
    expect((await c.request({ type: 'authenticate', token: s.token('1') })).type).toBe('auth_success');
  });

  it('refuses a heartbeat timeout not shorter than the interval', () => {
    expect(() => loadConfig({ HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '1000' })).toThrow(ConfigError);
    expect(() => loadConfig({ HEARTBEAT_INTERVAL_MS: '1000', HEARTBEAT_TIMEOUT_MS: '999' })).not.toThrow();
  });
});
