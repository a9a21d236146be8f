/**
 * PROTOCOL §8 `get_presence` at scale (audit 6 F7): the asked ids are tested against the
 * contact relation (a follow either way or a shared active group, no block either way),
 * so for a user in 100 groups of 200 members the reply reads a few hundred rows, not
 * every member of every shared group (20,000 membership rows: the old full contact set).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame } from '../helpers/client.ts';
import { freshUsers } from '../helpers/dmkit.ts';
import { planCost, startMeasuredServer, type QueryRecorder } from '../helpers/queryCost.ts';
import type { TestServer } from '../helpers/server.ts';

let s: TestServer;
let recorder: QueryRecorder;
beforeAll(async () => {
  ({ s, recorder } = await startMeasuredServer({ FOLLOW_POLICY: 'none' }));
});
afterAll(() => s?.close());

const GROUPS = 100;
const MEMBERS = 200;

describe('get_presence cost (F7)', () => {
  it('tests only the asked ids: bounded rows for a user in 100 groups of 200 members, same answer', async () => {
    // u; f follows u; m shares one active group; b shares a group but u blocked b; d shares
    // only an inactive group; x is a stranger.
    const [u, f, m, b, d, x] = (await freshUsers(s, 6, [[1, 0]])) as [string, string, string, string, string, string];
    await addBlock(s.app.db, u, b);
    const db = s.app.db;
    const ids = Array.from({ length: GROUPS }, (_, i) => `g_cost_${i}`);
    await db.query(
      `INSERT INTO group_chats (group_id, group_name, created_by_user_id, owner_id, max_members) SELECT id, 'cost', $2, $2, 1000 FROM unnest($1::text[]) id`,
      [[...ids, 'g_cost_dead'], u],
    );
    await db.query(`UPDATE group_chats SET is_active = false WHERE group_id = 'g_cost_dead'`);
    // Every group: u and 199 members who are not users (ids from 7,000,000), m and b in the first.
    await db.query(
      `INSERT INTO group_members (group_id, user_id, role)
       SELECT id, CASE WHEN k = 0 THEN $2 ELSE (7000000 + n * 1000 + k)::text END, CASE WHEN k = 0 THEN 'owner' ELSE 'member' END
       FROM unnest($1::text[]) WITH ORDINALITY t(id, n), generate_series(0, $3::int - 1) k`,
      [ids, u, MEMBERS],
    );
    await db.query(`INSERT INTO group_members (group_id, user_id, role) VALUES ($1, $2, 'member'), ($1, $3, 'member'), ('g_cost_dead', $4, 'owner'), ('g_cost_dead', $5, 'member')`, [
      ids[0],
      m,
      b,
      u,
      d,
    ]);
    await db.query('ANALYZE group_members');
    const c = await s.login(u);
    await s.login(m);

    const asked = [f, m, b, d, x, u, `0${m}`];
    const { value, queries } = await recorder.during(() => c.request({ type: 'get_presence', userIds: asked }));
    expect(value.type).toBe('presence');
    const users = value.users as Frame[];
    expect(users.map((e) => e.id).sort()).toEqual([f, m].sort());
    expect(users.find((e) => e.id === m)!.online).toBe(true);
    expect(users.find((e) => e.id === f)!.online).toBe(false);

    let rowsRead = 0;
    for (const q of queries) rowsRead += (await planCost(db, q.sql, q.params)).rowsRead;
    // The full contact set reads every membership of u's groups: 20,000+ rows.
    expect(rowsRead).toBeLessThan(2000);
  });
});
