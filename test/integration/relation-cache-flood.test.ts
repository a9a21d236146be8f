/**
 * The relation cache under a `start_conversation` flood with ids of users that do not
 * exist (audit 2 of 2026-12-05, F4; PROTOCOL §5 RELATION_CACHE_MS, §6 start_conversation): each
 * answer is NOT_FOUND and was cached in the one shared map, which never evicted expired
 * entries and was cleared for every user when full. Now such answers stay in their own
 * bounded map, and entries older than RELATION_CACHE_MS are evicted as new ones arrive.
 * Real server, real `ws` clients; the cache's size is read from the server's policy.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { freshUsers, sendOk } from '../helpers/dmkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const CACHE_MS = 400;
let s: TestServer;
beforeAll(async () => {
  s = await startServer({ RELATION_CACHE_MS: String(CACHE_MS), PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

/** Entries the server's relation cache holds: pairs of existing users, answers for unknown users. */
function held(): { known: number; unknown: number } {
  const q = s.app.chat.deps.relations as unknown as { cache: Map<string, unknown>; unknown?: Map<string, unknown> };
  return { known: q.cache.size, unknown: q.unknown?.size ?? 0 };
}

/** `n` start_conversation requests for ids no user has, spread over the connections `cs`, 25 in flight on each; resolves the reply codes seen. */
async function flood(cs: TestClient[], from: number, n: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    cs.map(async (c) => {
      while (next < n) {
        const ids = Array.from({ length: Math.min(25, n - next) }, () => String(900_000_000 + from + next++));
        const replies = await Promise.all(ids.map((id) => c.request({ type: 'start_conversation', recipientId: id }, 15_000)));
        for (const r of replies) seen[r.code ?? r.type] = (seen[r.code ?? r.type] ?? 0) + 1;
      }
    }),
  );
  return seen;
}

it('unknown-user lookups stay out of the pairs cache, and expired entries are evicted as new ones arrive', async () => {
  const [a, b] = await freshUsers(s, 2, [
    [0, 1],
    [1, 0],
  ]);
  const ca = await s.login(a!);
  const devices = [ca, ...(await Promise.all([1, 2, 3].map(() => s.login(a!))))];
  await sendOk(ca, b!, 'hi'); // caches the pair (a, b)
  expect(held().known).toBe(1);

  expect(await flood(devices, 0, 600)).toEqual({ NOT_FOUND: 600 });
  // The flood's answers did not land among real pairs (before the fix: 1 + 600 there).
  expect(held().known).toBeLessThanOrEqual(1);

  await sleep(CACHE_MS + 100); // everything cached so far has expired
  await flood(devices, 10_000, 200);
  // 200 stores evicted up to 8 expired entries each: what is left is (at most) the 200 new answers.
  const after = held();
  expect(after.known + after.unknown, JSON.stringify(after)).toBeLessThanOrEqual(200);
  // The pair is looked up afresh and still works.
  await sendOk(ca, b!, 'again');
}, 30_000);
