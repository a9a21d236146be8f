/**
 * The client SDK's pure parts: the close-code rules (PROTOCOL §2.3), the backoff, the
 * command table's agreement with the server's (so every command the server accepts has a
 * typed reply in the SDK), the sync loop and the background resync's scheduling (§9),
 * receipts not repeated for DMs that arrived live, and that it bundles for browsers
 * without Node built-ins.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffDelay, onClose, REPLY_TYPES, type SyncPage } from '../../src/client/index.ts';
import { ReceiptBatcher } from '../../src/client/receipts.ts';
import { runSync, SyncRounds, type SyncClient } from '../../src/client/syncLoop.ts';
import { coreCommands } from '../../src/protocol/inbound.ts';
import { groupCommands } from '../../src/protocol/inboundGroups.ts';
import { bundleClient } from '../../scripts/lib/bundle.ts';

describe('close codes (§2.3)', () => {
  it('stops on 4400, 4403, 4409, 4429; gets a new token on 4401; reconnects on the rest', () => {
    expect(onClose(4400)).toEqual({ action: 'stop', reason: 'protocol_errors' });
    expect(onClose(4403)).toEqual({ action: 'stop', reason: 'revoked' });
    expect(onClose(4409)).toEqual({ action: 'stop', reason: 'replaced' });
    expect(onClose(4429)).toEqual({ action: 'stop', reason: 'too_many_devices' });
    expect(onClose(4401)).toEqual({ action: 'refresh' });
    for (const code of [1000, 1001, 1006, 1007, 1009, 1011, 4408, 4503, 4999]) expect(onClose(code)).toEqual({ action: 'reconnect' });
  });
});

describe('backoff', () => {
  it('full jitter under a cap that doubles from minDelayMs up to maxDelayMs', () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, {}, top)).toBe(499);
    expect(backoffDelay(3, {}, top)).toBe(3999);
    expect(backoffDelay(10, {}, top)).toBe(29_999);
    expect(backoffDelay(1000, { minDelayMs: 100, maxDelayMs: 1000 }, top)).toBe(999);
    expect(backoffDelay(5, {}, () => 0)).toBe(0);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(i % 12);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(30_000);
    }
  });
});

describe('command table', () => {
  it('has a reply type for every command the server accepts (authenticate is run by the client itself)', () => {
    const limits = { maxMessageLength: 5000, maxGroupSize: 50 };
    const server = Object.keys({ ...coreCommands(limits), ...groupCommands(limits) }).filter((t) => t !== 'authenticate');
    expect(Object.keys(REPLY_TYPES).sort()).toEqual(server.sort());
  });
});

/** A sync_result page with messages `ids` (DMs to user '1'). */
function page(cursor: string, hasMore: boolean, ids: string[] = []): Record<string, unknown> {
  return { type: 'sync_result', cursor, hasMore, changes: [], messages: ids.map((id) => ({ id, recipientId: '1' })) };
}

describe('sync loop (§9)', () => {
  it('pages until hasMore is false; RATE_LIMITED waits only when the caller says so; a closed connection ends it', async () => {
    const replies = [page('c1', true), { type: 'error', code: 'RATE_LIMITED', retryAfter: 2 }, page('c2', false)];
    let cursor: string | null = 'c0';
    const asked: (string | null)[] = [];
    const waits: number[] = [];
    const host = {
      page: async (c: string | null) => (asked.push(c), replies.shift() ?? null),
      current: () => true,
      cursor: () => cursor,
      apply: (p: SyncPage) => void (cursor = p.cursor),
    };
    expect(await runSync({ ...host, rateLimited: async (s) => (waits.push(s), true) })).toEqual({ kind: 'done' });
    expect(asked).toEqual(['c0', 'c1', 'c1']);
    expect(waits).toEqual([2]);
    expect(cursor).toBe('c2');

    replies.push(page('c3', true), { type: 'error', code: 'RATE_LIMITED', retryAfter: 1 });
    expect(await runSync(host)).toMatchObject({ kind: 'refused', code: 'RATE_LIMITED' });
    expect(cursor).toBe('c3');
    expect(await runSync(host)).toEqual({ kind: 'lost' });
    replies.push(page('c4', false));
    expect(await runSync({ ...host, current: () => false })).toEqual({ kind: 'lost' });
    expect(cursor).toBe('c3');
  });
});

describe('background resync scheduling', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  /** SyncRounds on connection 'A' with pages answered from `replies` (null: no answer yet). */
  function rounds(replies: (Record<string, unknown> | Promise<Record<string, unknown> | null>)[]) {
    const st = { conn: 'A', ready: true, sent: [] as (string | null)[], pages: [] as SyncPage[], expired: [] as unknown[] };
    const client: SyncClient<string> = {
      page: async (_c, cursor) => (st.sent.push(cursor), (await replies.shift()) ?? null),
      current: (c) => c === st.conn,
      ready: () => st.ready,
      onPage: (p) => void st.pages.push(p),
      onExpired: (f) => void st.expired.push(f),
    };
    const r = new SyncRounds<string>('c0', 100, client);
    expect(r.connected('auth')).toBe(true);
    r.start('A');
    return { r, st };
  }

  it('runs only after stream traffic, once a period, and keeps the mark after a refusal', async () => {
    const { r, st } = rounds([{ type: 'error', code: 'SERVICE_UNAVAILABLE' }, page('c1', true), page('c2', false)]);
    for (const t of ['pong', 'typing_indicator', 'user_online', 'user_offline', 'presence', 'online_users', 'token_expiring', 'message_status', 'message_delivered_ack']) r.saw(t);
    await vi.advanceTimersByTimeAsync(500);
    expect(st.sent).toEqual([]);
    r.saw('new_private_message');
    await vi.advanceTimersByTimeAsync(100);
    expect(st.sent).toEqual(['c0']); // refused: the round ends, no retry within it
    await vi.advanceTimersByTimeAsync(100);
    expect(st.sent).toEqual(['c0', 'c0', 'c1']);
    expect(r.cursor).toBe('c2');
    expect(st.pages.map((p) => p.cursor)).toEqual(['c1', 'c2']);
    await vi.advanceTimersByTimeAsync(500);
    expect(st.sent).toHaveLength(3); // the mark was used
    r.stop();
  });

  it('one round at a time; a page answered after the connection changed moves no cursor; stop ends the timer', async () => {
    let answer!: (f: Record<string, unknown> | null) => void;
    const { r, st } = rounds([new Promise((resolve) => (answer = resolve))]);
    r.saw('private_message_sent');
    await vi.advanceTimersByTimeAsync(100);
    r.saw('new_group_message');
    await vi.advanceTimersByTimeAsync(300);
    expect(st.sent).toEqual(['c0']); // still in flight: no second round
    st.conn = 'B';
    answer(page('old', false));
    await vi.advanceTimersByTimeAsync(0);
    expect(r.cursor).toBe('c0');
    expect(st.pages).toEqual([]);
    r.stop();
    r.saw('new_private_message');
    await vi.advanceTimersByTimeAsync(500);
    expect(st.sent).toEqual(['c0']);
  });

  it('not while not ready; SYNC_EXPIRED takes the connection\'s authentication cursor and is reported', async () => {
    const { r, st } = rounds([{ type: 'error', code: 'SYNC_EXPIRED' }]);
    st.ready = false;
    r.saw('new_private_message');
    await vi.advanceTimersByTimeAsync(300);
    expect(st.sent).toEqual([]);
    st.ready = true;
    await vi.advanceTimersByTimeAsync(100);
    expect(r.cursor).toBe('auth');
    expect(st.expired).toEqual([{ type: 'error', code: 'SYNC_EXPIRED' }]);
    r.stop();
  });

  it('without a held cursor the authentication\'s is taken and no catch-up is needed; the timer does not keep Node alive', () => {
    vi.useRealTimers();
    const r = new SyncRounds<string>(null, 100, { page: async () => null, current: () => true, ready: () => true, onPage: () => {}, onExpired: () => {} });
    expect(r.connected('auth')).toBe(false);
    expect(r.cursor).toBe('auth');
    r.start('A');
    expect((r as unknown as { timer: NodeJS.Timeout }).timer.hasRef()).toBe(false);
    r.stop();
  });
});

describe('delivery receipts', () => {
  it('a DM received live is not reported again when a sync page repeats it; one only synced is; the memory is bounded', async () => {
    vi.useFakeTimers();
    try {
      const sent: string[][] = [];
      const b = new ReceiptBatcher(async (ids) => (sent.push(ids), undefined));
      const dm = (id: string) => ({ id, recipientId: '1' });
      b.live(dm('live'), '1');
      b.live({ id: 'theirs', recipientId: '2' }, '1'); // not to this user: neither reported nor kept
      b.synced(dm('live'), '1');
      b.synced(dm('missed'), '1');
      b.synced({ id: 'theirs', recipientId: '2' }, '1');
      await vi.advanceTimersByTimeAsync(100);
      expect(sent.flat()).toEqual(['live', 'missed']);
      // Seen once in a page, it is forgotten: the memory holds only what no page has repeated.
      b.synced(dm('live'), '1');
      b.live(dm('gone'), '1');
      b.forgetLive();
      b.synced(dm('gone'), '1');
      for (let i = 0; i <= 10_000; i++) b.live(dm(`n${i}`), '1');
      b.synced(dm('n0'), '1'); // evicted: reported again (harmless)
      b.synced(dm('n1'), '1');
      sent.length = 0;
      await vi.advanceTimersByTimeAsync(100);
      const ids = sent.flat();
      expect(ids.filter((id) => !id.startsWith('n'))).toEqual(['live', 'gone', 'gone']);
      expect(ids.filter((id) => id === 'n0')).toHaveLength(2);
      expect(ids.filter((id) => id === 'n1')).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('browser bundle', () => {
  it('bundles for the browser platform with no Node built-in and no server code', async () => {
    const code = await bundleClient(new URL('../..', import.meta.url).pathname);
    expect(code).toMatch(/\bChatClient\b/);
    expect(code).toMatch(/export \{[^}]*\bChatClient\b/);
    expect(code).not.toMatch(/from ["']node:|require\(/);
    expect(code).not.toMatch(/zod|winston|pg-pool/);
    expect(code.length).toBeLessThan(60_000);
  });
});
