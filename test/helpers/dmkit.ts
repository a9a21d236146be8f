/**
 * Small helpers for the direct-message tests: fresh user ids per test, a pair of
 * logged-in users, send-and-expect, error assertions, row counts and bounded polling.
 */
import { expect } from 'vitest';
import type { Frame, TestClient } from './client.ts';
import type { TestServer } from './server.ts';

let next = 100;
/** A user id no other test of this file uses (ids ≥ 100: clear of PGlite's seeded demo users 1..3). */
export const freshId = (): string => String(next++);

/** Create `n` fresh users (optionally with follow edges among them given by index pairs). */
export async function freshUsers(s: TestServer, n: number, follows: [number, number][] = []): Promise<string[]> {
  const ids = Array.from({ length: n }, () => freshId());
  await s.users(...ids);
  if (follows.length) await s.follow(...follows.map(([a, b]) => [ids[a]!, ids[b]!] as [string, string]));
  return ids;
}

/** Two fresh users who follow each other, each logged in once: `[a, b, ca, cb]`. */
export async function mutualPair(s: TestServer): Promise<{ a: string; b: string; ca: TestClient; cb: TestClient }> {
  const [a, b] = await freshUsers(s, 2, [
    [0, 1],
    [1, 0],
  ]);
  const [ca, cb] = await Promise.all([s.login(a!), s.login(b!)]);
  return { a: a!, b: b!, ca, cb };
}

/** Send a DM and expect `private_message_sent`; resolves the ack. */
export async function sendOk(c: TestClient, recipientId: string | number, content: string, extra: Record<string, unknown> = {}): Promise<Frame> {
  const r = await c.request({ type: 'send_private_message', recipientId, content, ...extra });
  if (r.type !== 'private_message_sent') throw new Error(`send failed: ${JSON.stringify(r)}`);
  return r;
}

/** Send `frame` and expect an `error` with `code` (and `field` when given); resolves the error frame. */
export async function expectError(c: TestClient, frame: Record<string, unknown>, code: string, field?: string): Promise<Frame> {
  const r = await c.request(frame);
  expect(r, JSON.stringify(r)).toMatchObject({ type: 'error', code });
  if (field !== undefined) expect(r.field).toBe(field);
  return r;
}

/** History of `c` with `other` (newest page, limit 100 unless given). */
export async function history(c: TestClient, other: string, extra: Record<string, unknown> = {}): Promise<Frame> {
  const r = await c.request({ type: 'get_private_messages', recipientId: other, limit: 100, ...extra });
  expect(r.type, JSON.stringify(r)).toBe('private_message_history');
  return r;
}

/** Number of rows of `table` matching `where` (SQL with $1..). */
export async function count(s: TestServer, table: string, where = 'true', params: unknown[] = []): Promise<number> {
  const { rows } = await s.app.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, params);
  return Number(rows[0]!.n);
}

/** Messages stored with `senderId` as sender. */
export const messagesFrom = (s: TestServer, senderId: string): Promise<number> => count(s, 'private_messages', 'sender_id = $1', [senderId]);

/** Poll `fn` until it resolves truthy or `timeoutMs` passes (then throws). Resolves the value. */
export async function waitFor<T>(fn: () => Promise<T>, timeoutMs = 3000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** An ISO-8601 UTC timestamp string. */
export const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A UUIDv7 string. */
export const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A random UUID that names no message. */
export const MISSING_ID = '01890000-0000-7000-8000-000000000000';

const DM_EVENTS = new Set(['new_private_message', 'private_message_sent', 'message_edited', 'message_deleted', 'message_read', 'message_status', 'message_marked_read', 'reaction_added', 'reaction_removed', 'conversation_deleted']);
/** Any DM event (presence and other unrelated frames do not count). */
export const dmEvent = (f: Frame): boolean => DM_EVENTS.has(f.type);

/**
 * Wait (≤ 10 s) until the messages `ids` are below the database's snapshot xmin: `sync`
 * returns a change only then (SYSTEM_DESIGN "Sync and the cursor"), and another test
 * file's open transaction on the shared server can hold it back for a moment.
 */
export async function syncable(s: TestServer, ids: readonly string[]): Promise<void> {
  await waitFor(async () => {
    const { rows } = await s.app.db.query<{ ok: boolean | null }>('SELECT bool_and(m.change_xid < pg_snapshot_xmin(pg_current_snapshot())) AS ok FROM private_messages m WHERE m.id = ANY($1::uuid[])', [ids]);
    return rows[0]?.ok === true || undefined;
  }, 10_000);
}
