/**
 * PROTOCOL §3 items 1–6: welcome frame, authenticate (frame, alias, Bearer header; never
 * the query string), every token rule with its auth_error code, failures, frames held
 * before authentication, token refresh and token_expiring.
 *
 * One server with JWT_ISSUER/JWT_AUDIENCE set (so `iss`/`aud` are checked); every good
 * token carries both.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jwtKey } from '../../src/auth/keys.ts';
import { revokeJti } from '../../src/store/devData.ts';
import { TestClient, type Frame } from '../helpers/client.ts';
import { startServer, TEST_JWT_SECRET, type TestServer } from '../helpers/server.ts';
import { BareClient, ISO_RE, jti, nowS, signClaims, unsignedToken, UUID_RE, waitFor, within } from '../helpers/wire.ts';

const ISS = 'https://auth.test.example';
const AUD = 'chat-service';
const key = jwtKey(TEST_JWT_SECRET, 'base64');

let s: TestServer;

/** Claims of a good token for `sub`, with `over` applied (undefined removes a claim). */
const claims = (sub: string, over: Record<string, unknown> = {}) => ({ sub, jti: jti(), iss: ISS, aud: AUD, iat: nowS(), exp: nowS() + 3600, ...over });
/** A good token for `sub` (override claims with `over`). */
const tok = (sub: string, over: Record<string, unknown> = {}) => signClaims(claims(sub, over), key);
/** HS256 over the given header and raw payload JSON (for payloads JSON.stringify cannot write). */
const signRaw = (header: Record<string, unknown>, payloadJson: string) => {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(payloadJson).toString('base64url')}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
};
/** Connect and authenticate as `sub` with a good token (plus `over`). */
async function login(sub: string, over: Record<string, unknown> = {}): Promise<{ c: TestClient; ok: Frame; token: string }> {
  const c = await s.connect();
  const token = tok(sub, over);
  const ok = await c.request({ type: 'authenticate', token });
  expect(ok.type, JSON.stringify(ok)).toBe('auth_success');
  return { c, ok, token };
}

beforeAll(async () => {
  s = await startServer({ JWT_ISSUER: ISS, JWT_AUDIENCE: AUD });
  await s.users(
    { id: '1', username: 'alice', email: 'alice@example.com', firstName: 'Alice', lastName: 'Smith' },
    { id: '2', username: 'bob', firstName: 'Bob', lastName: 'Jones' },
    '3',
    '4',
    '5',
    '9007199254740992',
  );
  await s.follow(['1', '2'], ['3', '4']);
}, 120_000); // server start on the embedded database can be slow on a busy machine
afterAll(() => s?.close());

describe('§3.1 welcome frame', () => {
  it('sends connected {clientId uuid, requiresAuth, message, timestamp} first, a new clientId per connection', async () => {
    const a = await BareClient.open(s.url);
    const b = await BareClient.open(s.url);
    try {
      const [fa] = await a.atLeast(1);
      const [fb] = await b.atLeast(1);
      expect(fa).toEqual({ type: 'connected', clientId: expect.stringMatching(UUID_RE), requiresAuth: true, message: 'Please authenticate', timestamp: expect.stringMatching(ISO_RE) });
      expect(fb!.type).toBe('connected');
      expect(fb!.clientId).not.toBe(fa!.clientId);
    } finally {
      a.terminate();
      b.terminate();
    }
  });
});

describe('§3.2 authenticate', () => {
  it('`authenticate` → auth_success with the nested user, the flat fields, expiresAt (= exp), cursor and the requestId', async () => {
    const exp = nowS() + 1800;
    const c = await s.connect();
    const r = await c.request({ type: 'authenticate', token: tok('1', { exp }) });
    expect(r).toMatchObject({
      type: 'auth_success',
      user: { id: '1', username: 'alice', email: 'alice@example.com', displayName: 'Alice Smith', firstName: 'Alice', lastName: 'Smith' },
      userId: '1',
      username: 'alice',
      displayName: 'Alice Smith',
      expiresAt: new Date(exp * 1000).toISOString(),
      timestamp: expect.stringMatching(ISO_RE),
      requestId: expect.any(String),
    });
    expect(typeof r.cursor).toBe('string');
    expect(r.cursor.length).toBeGreaterThan(0);
    // Authenticated: a command is answered (not held).
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('accepts the alias type `auth`', async () => {
    const c = await s.connect();
    const r = await c.request({ type: 'auth', token: tok('2') });
    expect(r).toMatchObject({ type: 'auth_success', userId: '2', username: 'bob', user: { id: '2', displayName: 'Bob Jones' } });
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('`Authorization: Bearer` on the upgrade → auth_success right after connected, no authenticate frame needed', async () => {
    const b = await BareClient.open(s.url, { headers: { Authorization: `Bearer ${tok('1')}` } });
    try {
      const frames = await b.atLeast(2);
      expect(frames[0]!.type).toBe('connected');
      expect(frames[1]).toMatchObject({ type: 'auth_success', userId: '1', user: { id: '1' } });
      b.send({ type: 'get_communities', requestId: 'after-bearer' });
      // (Presence events for the now-online user may interleave from here on.)
      const reply = await waitFor(() => frames.find((f) => f.requestId === 'after-bearer'), 5000, 'the reply');
      expect(reply.type).toBe('community_list');
    } finally {
      b.terminate();
    }
  });

  it('a bad Bearer token → auth_error right after connected, and the connection stays open for another try', async () => {
    const b = await BareClient.open(s.url, { headers: { Authorization: `Bearer ${tok('1', { exp: nowS() - 3600 })}` } });
    try {
      const frames = await b.atLeast(2);
      expect(frames[0]!.type).toBe('connected');
      expect(frames[1]).toMatchObject({ type: 'auth_error', code: 'TOKEN_EXPIRED' });
      b.send({ type: 'authenticate', token: tok('1'), requestId: 'retry' });
      const reply = await waitFor(() => frames.find((f) => f.requestId === 'retry'), 5000, 'the reply');
      expect(reply).toMatchObject({ type: 'auth_success', userId: '1' });
    } finally {
      b.terminate();
    }
  });

  it('does not accept a token in the query string', async () => {
    const good = tok('1');
    const c = await TestClient.connect(`${s.url}/chat?token=${good}&access_token=${good}&jwt=${good}`);
    try {
      c.send({ type: 'get_communities', requestId: 'q-held' });
      expect(await c.none('auth_success', 300)).toBe(true);
      expect(await c.none((f) => f.requestId === 'q-held', 1)).toBe(true);
      // The query token is no fallback either: an authenticate without a token is TOKEN_MISSING.
      const r = await c.request({ type: 'authenticate' });
      expect(r).toMatchObject({ type: 'auth_error', code: 'TOKEN_MISSING' });
      expect(await c.next((f) => f.requestId === 'q-held')).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    } finally {
      await c.close();
    }
  });
});

describe('§3.3 token rules → auth_error codes', () => {
  const otherKey = randomBytes(48);
  const cases: [name: string, token: () => string | undefined, code: string][] = [
    ['no token field', () => undefined, 'TOKEN_MISSING'],
    ['empty token', () => '', 'TOKEN_MISSING'],
    ['null token', () => null as unknown as string, 'TOKEN_MISSING'],
    ['not a JWT', () => 'not-a-jwt', 'TOKEN_INVALID'],
    ['alg none (unsigned)', () => unsignedToken(claims('1')), 'TOKEN_INVALID'],
    ['alg none with the signature of a good token', () => unsignedToken(claims('1')) + tok('1').split('.')[2], 'TOKEN_INVALID'],
    ['signed with another key', () => signClaims(claims('1'), otherKey), 'TOKEN_INVALID'],
    ['signed with the utf8 bytes of the base64 secret (wrong decoding)', () => signClaims(claims('1'), Buffer.from(TEST_JWT_SECRET, 'utf8')), 'TOKEN_INVALID'],
    ['HS512 with the right key', () => signClaims(claims('1'), key, 'HS512'), 'TOKEN_INVALID'],
    ['HS384 with the right key', () => signClaims(claims('1'), key, 'HS384'), 'TOKEN_INVALID'],
    ['tampered payload', () => {
      const [h, , sig] = tok('1').split('.');
      return `${h}.${Buffer.from(JSON.stringify(claims('2'))).toString('base64url')}.${sig}`;
    }, 'TOKEN_INVALID'],
    ['expired beyond the 30 s leeway', () => tok('1', { exp: nowS() - 120, iat: nowS() - 3600 }), 'TOKEN_EXPIRED'],
    ['without exp', () => tok('1', { exp: undefined }), 'TOKEN_INVALID'],
    ['nbf in the future beyond the leeway', () => tok('1', { nbf: nowS() + 120 }), 'TOKEN_INVALID'],
    ['iat in the future beyond the leeway', () => tok('1', { iat: nowS() + 120 }), 'TOKEN_INVALID'],
    ['wrong iss', () => tok('1', { iss: 'https://evil.example' }), 'TOKEN_INVALID'],
    ['no iss', () => tok('1', { iss: undefined }), 'TOKEN_INVALID'],
    ['wrong aud', () => tok('1', { aud: 'another-service' }), 'TOKEN_INVALID'],
    ['no aud', () => tok('1', { aud: undefined }), 'TOKEN_INVALID'],
    ['sub not a user id', () => tok('alice'), 'TOKEN_INVALID'],
    // No Date holds it: refused, never a silent half-authenticated connection.
    ['exp beyond any date (1e13 s)', () => tok('1', { exp: 1e13 }), 'TOKEN_INVALID'],
    ['iat not a number', () => tok('1', { iat: String(nowS() + 3600) }), 'TOKEN_INVALID'],
    // RFC 7519 §4.1.7: jti is a string; a number could slip past jwt_revocation.
    ['numeric jti', () => tok('1', { jti: 123456789 }), 'TOKEN_INVALID'],
    ['jti with NUL', () => tok('1', { jti: 'a\u0000b' }), 'TOKEN_INVALID'],
    ['unknown user', () => tok('987654321'), 'USER_NOT_FOUND'],
    // An empty jti could never be revoked (audit 10, F7).
    ['empty jti', () => tok('1', { jti: '' }), 'TOKEN_INVALID'],
    // RFC 7515 §4.1.11: a critical extension this server does not know (audit 10, F8).
    ['crit header', () => signRaw({ alg: 'HS256', typ: 'JWT', crit: ['x-ext'], 'x-ext': 1 }, JSON.stringify(claims('1'))), 'TOKEN_INVALID'],
    // User 9007199254740992 exists: JSON.parse rounds this number to it (audit 10, F2).
    ['numeric sub above 2^53 - 1', () => signRaw({ alg: 'HS256', typ: 'JWT' }, JSON.stringify(claims('0')).replace('"sub":"0"', '"sub":9007199254740993')), 'TOKEN_INVALID'],
    // An auth_error, not BAD_REQUEST: it counts toward the 5 failures (§3 item 4; audit 10, F9).
    ['token over 16,384 characters', () => tok('1', { pad: 'x'.repeat(16_400) }), 'TOKEN_INVALID'],
  ];
  for (const [name, token, code] of cases) {
    it(`${name} → ${code}`, async () => {
      const c = await s.connect();
      try {
        const t = token();
        const r = await c.request(t === undefined ? { type: 'authenticate' } : { type: 'authenticate', token: t });
        expect(r).toEqual({ type: 'auth_error', code, message: expect.any(String), error: r.message, timestamp: expect.stringMatching(ISO_RE), requestId: expect.any(String) });
        // The message carries no token content.
        if (t) expect(r.message).not.toContain(t.slice(0, 20));
        // Refused: a command still waits for authentication.
        expect((await c.request({ type: 'get_communities' })).code).toBe('AUTH_REQUIRED');
      } finally {
        await c.close();
      }
    });
  }

  it('accepts a numeric sub while it is an exact integer', async () => {
    const c = await s.connect();
    const r = await c.request({ type: 'authenticate', token: signRaw({ alg: 'HS256', typ: 'JWT' }, JSON.stringify({ ...claims('0'), sub: 2 })) });
    expect(r).toMatchObject({ type: 'auth_success', userId: '2' });
    await c.close();
  });

  it('accepts exp, nbf and iat within the 30 s leeway', async () => {
    for (const over of [{ exp: nowS() - 10, iat: nowS() - 600 }, { nbf: nowS() + 10 }, { iat: nowS() + 10 }]) {
      const c = await s.connect();
      const r = await c.request({ type: 'authenticate', token: tok('1', over) });
      expect(r.type, JSON.stringify(over)).toBe('auth_success');
      await c.close();
    }
  });

  it('a revoked jti → TOKEN_REVOKED; another token of the same user still works', async () => {
    const revoked = jti();
    await revokeJti(s.app.db, revoked);
    const c = await s.connect();
    expect(await c.request({ type: 'authenticate', token: tok('3', { jti: revoked }) })).toMatchObject({ type: 'auth_error', code: 'TOKEN_REVOKED' });
    expect(await c.request({ type: 'authenticate', token: tok('3') })).toMatchObject({ type: 'auth_success', userId: '3' });
  });

  it('a failing lookup refuses with AUTH_UNAVAILABLE (fail closed), and recovers', async () => {
    const c = await s.connect();
    await s.app.db.query('ALTER TABLE jwt_revocation RENAME TO jwt_revocation_x');
    try {
      expect(await c.request({ type: 'authenticate', token: tok('3') })).toMatchObject({ type: 'auth_error', code: 'AUTH_UNAVAILABLE' });
    } finally {
      await s.app.db.query('ALTER TABLE jwt_revocation_x RENAME TO jwt_revocation');
    }
    expect(await c.request({ type: 'authenticate', token: tok('3') })).toMatchObject({ type: 'auth_success', userId: '3' });
  });
});

describe('§3.4 failures', () => {
  it('the connection stays open after a failure: ping still answered, a later good token succeeds', async () => {
    const c = await s.connect();
    expect((await c.request({ type: 'authenticate', token: 'garbage' })).type).toBe('auth_error');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    expect((await c.request({ type: 'authenticate', token: tok('4') })).type).toBe('auth_success');
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('closes with 4401 at the 5th failure, not before', async () => {
    const c = await s.connect();
    for (let i = 1; i <= 4; i++) expect((await c.request({ type: 'authenticate', token: `bad-${i}` })).code).toBe('TOKEN_INVALID');
    expect((await c.request({ type: 'ping' })).type).toBe('pong');
    expect((await c.request({ type: 'authenticate', token: tok('999999') })).code).toBe('USER_NOT_FOUND');
    expect((await within(c.closed, 3000, '4401 close')).code).toBe(4401);
  });
});

describe('§3.5 before authentication', () => {
  it('answers ping and test at once, holds other commands', async () => {
    const c = await s.connect();
    c.send({ type: 'get_communities', requestId: 'held-1' });
    const pong = await c.request({ type: 'ping' });
    expect(pong).toMatchObject({ type: 'pong', timestamp: expect.any(Number) });
    expect((await c.request({ type: 'test' })).type).toBe('test_response');
    expect(await c.none((f) => f.requestId === 'held-1', 200)).toBe(true);
    await c.request({ type: 'authenticate', token: tok('4') });
    expect(await c.next((f) => f.requestId === 'held-1')).toMatchObject({ type: 'community_list' });
  });

  it('processes held frames in order right after a successful authentication', async () => {
    const bob = (await login('2')).c;
    const c = await s.connect();
    for (const n of [1, 2, 3]) c.send({ type: 'send_private_message', recipientId: 2, content: `held ${n}`, requestId: `h${n}` });
    c.send({ type: 'get_communities', requestId: 'h4' });
    expect(await c.none((f) => f.type !== 'pong', 200)).toBe(true);
    c.send({ type: 'authenticate', token: tok('1'), requestId: 'auth' });
    // Direct replies (frames with a requestId), in the order they arrived.
    const replies = () => c.frames.filter((f) => f.requestId !== undefined);
    await waitFor(() => replies().length >= 5, 5000, 'five replies');
    expect(replies().map((f) => f.requestId)).toEqual(['auth', 'h1', 'h2', 'h3', 'h4']);
    expect(replies().map((f) => f.type)).toEqual(['auth_success', 'private_message_sent', 'private_message_sent', 'private_message_sent', 'community_list']);
    expect(replies().slice(1, 4).map((f) => f.message.content)).toEqual(['held 1', 'held 2', 'held 3']);
    const got = [await bob.next('new_private_message'), await bob.next('new_private_message'), await bob.next('new_private_message')];
    expect(got.map((f) => f.message.content)).toEqual(['held 1', 'held 2', 'held 3']);
  });

  it('holds up to 20 frames: all 20 are processed after authentication', async () => {
    const c = await s.connect();
    for (let i = 0; i < 20; i++) c.send({ type: 'get_communities', requestId: `k${i}` });
    expect(await c.none('error', 200)).toBe(true);
    await c.request({ type: 'authenticate', token: tok('4') });
    for (let i = 0; i < 20; i++) expect((await c.next((f) => f.requestId === `k${i}`)).type).toBe('community_list');
  });

  it('a 21st frame → AUTH_REQUIRED for each held frame and for it; none runs after authentication', async () => {
    const c = await s.connect();
    for (let i = 0; i < 21; i++) c.send({ type: 'get_communities', requestId: `o${i}` });
    for (let i = 0; i < 21; i++) expect(await c.next((f) => f.requestId === `o${i}`)).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    c.send({ type: 'get_communities', requestId: 'o-after' });
    expect(await c.next((f) => f.requestId === 'o-after')).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    expect((await c.request({ type: 'authenticate', token: tok('4') })).type).toBe('auth_success');
    expect(await c.none('community_list', 300)).toBe(true);
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('more than 64 KiB held (under 20 frames) → AUTH_REQUIRED for each; 60 KB is held and processed', async () => {
    const pad = 'x'.repeat(4000);
    const ok = await s.connect();
    for (let i = 0; i < 15; i++) ok.send({ type: 'get_communities', requestId: `s${i}`, pad });
    expect(await ok.none('error', 200)).toBe(true);
    await ok.request({ type: 'authenticate', token: tok('4') });
    for (let i = 0; i < 15; i++) expect((await ok.next((f) => f.requestId === `s${i}`)).type).toBe('community_list');

    const c = await s.connect();
    for (let i = 0; i < 17; i++) c.send({ type: 'get_communities', requestId: `b${i}`, pad });
    for (let i = 0; i < 17; i++) expect(await c.next((f) => f.requestId === `b${i}`)).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    expect((await c.request({ type: 'authenticate', token: tok('4') })).type).toBe('auth_success');
    expect(await c.none('community_list', 300)).toBe(true);
  });

  it('the 64 KiB bound counts bytes: 16 frames of multi-byte text over 64 KiB → AUTH_REQUIRED', async () => {
    // '€' is 3 bytes in UTF-8: each frame is ~4.3 KB on the wire but only ~1.5 k characters.
    const pad = '€'.repeat(1400);
    const frame = (i: number) => JSON.stringify({ type: 'get_communities', requestId: `u${i}`, pad });
    expect(16 * Buffer.byteLength(frame(10))).toBeGreaterThan(64 * 1024);
    expect(16 * frame(10).length).toBeLessThan(64 * 1024);
    const c = await s.connect();
    for (let i = 10; i < 26; i++) c.send(frame(i));
    for (let i = 10; i < 26; i++) expect(await c.next((f) => f.requestId === `u${i}`)).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    expect((await c.request({ type: 'authenticate', token: tok('4') })).type).toBe('auth_success');
    expect(await c.none('community_list', 300)).toBe(true);
  });

  it('after a failed authentication each held frame and each further frame gets AUTH_REQUIRED', async () => {
    const c = await s.connect();
    c.send({ type: 'get_communities', requestId: 'f1' });
    c.send({ type: 'get_communities', requestId: 'f2' });
    expect((await c.request({ type: 'authenticate', token: 'bad' })).type).toBe('auth_error');
    expect(await c.next((f) => f.requestId === 'f1')).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    expect(await c.next((f) => f.requestId === 'f2')).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    expect(await c.request({ type: 'get_communities' })).toMatchObject({ type: 'error', code: 'AUTH_REQUIRED' });
    // A later success makes commands work again (and nothing refused earlier runs).
    expect((await c.request({ type: 'authenticate', token: tok('4') })).type).toBe('auth_success');
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
    expect(await c.none('community_list', 200)).toBe(true);
  });
});

describe('§3.6 token refresh', () => {
  it('authenticate again with a token for the same user → auth_success again with the new expiresAt', async () => {
    const { c, ok } = await login('3', { exp: nowS() + 600 });
    const exp2 = nowS() + 7200;
    const r = await c.request({ type: 'authenticate', token: tok('3', { exp: exp2 }) });
    expect(r).toMatchObject({ type: 'auth_success', userId: '3', expiresAt: new Date(exp2 * 1000).toISOString() });
    expect(r.expiresAt).not.toBe(ok.expiresAt);
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('a token for another user → USER_MISMATCH and nothing changes (still acting as the first user)', async () => {
    const four = (await login('4')).c;
    const { c } = await login('3');
    const r = await c.request({ type: 'authenticate', token: tok('1') });
    expect(r).toMatchObject({ type: 'auth_error', code: 'USER_MISMATCH' });
    const ack = await c.request({ type: 'send_private_message', recipientId: '4', content: 'still me' });
    expect(ack.type, JSON.stringify(ack)).toBe('private_message_sent');
    expect(ack.message.senderId).toBe('3');
    const ev = await four.next('new_private_message');
    expect(ev.message).toMatchObject({ senderId: '3', content: 'still me' });
    // Still user 3: a refresh for 3 works.
    expect((await c.request({ type: 'authenticate', token: tok('3') })).type).toBe('auth_success');
  });

  it('a failed refresh leaves the session as it was', async () => {
    const { c } = await login('3');
    expect((await c.request({ type: 'authenticate', token: tok('3', { exp: nowS() - 600, iat: nowS() - 3600 }) })).code).toBe('TOKEN_EXPIRED');
    expect((await c.request({ type: 'get_communities' })).type).toBe('community_list');
  });

  it('token_expiring {expiresAt} when the token has less than 60 s left; none with a long one', async () => {
    const long = await login('5', { exp: nowS() + 3600 });
    const short = await login('5', { exp: nowS() + 40 });
    const warn = await short.c.next('token_expiring', 3000);
    expect(warn).toMatchObject({ type: 'token_expiring', expiresAt: short.ok.expiresAt });
    expect(await long.c.none('token_expiring', 300)).toBe(true);
  });
});
