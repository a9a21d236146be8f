/**
 * PROTOCOL §5 in what a group member is shown (audit 5, F2 and F4; docs/PROTOCOL-NOTES.md
 * "Reactions and pins across a block" and `get_user_groups` `lastMessageAt`): a member
 * never sees the activity of a user with whom they have a block, in either direction.
 * - Reaction totals in `get_group_messages` and `sync` leave out reactions by such users
 *   (`userIds` and `count`; a reaction only they made is left out).
 * - `get_user_groups.lastMessageAt` is the newest message the caller can see (not deleted
 *   for everyone or for them, not from such a user), and the list is ordered by it; the
 *   query stays cheap for a user in 200 groups (no scan of any group's messages), also
 *   when all of them are unread (unreadCount from the gap-free seqs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import type { Frame } from '../helpers/client.ts';
import { groupHistory, makeGroup, ok, say, syncUntil, userGroup } from '../helpers/groupkit.ts';
import { freshUsers } from '../helpers/dmkit.ts';
import { planCost, startMeasuredServer, type QueryRecorder } from '../helpers/queryCost.ts';
import { sleep, type TestServer } from '../helpers/server.ts';

let s: TestServer;
let recorder: QueryRecorder;
beforeAll(async () => {
  ({ s, recorder } = await startMeasuredServer({ FOLLOW_POLICY: 'none' }));
});
afterAll(() => s?.close());

/** The reactions of message `id` in a `group_messages` or `sync_result` frame. */
const reactionsOf = (f: Frame, id: string): unknown => (f.messages as Frame[]).find((m) => m.id === id)?.reactions;

describe('group reaction totals across a block (F2)', () => {
  it('history and sync leave out reactions by users in a block with the viewer, either direction', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [a, b] = g.members as [(typeof g.members)[0], (typeof g.members)[0]];
    const o = g.owner;
    const m = await say(o, g.groupId, 'from the owner');
    // Before the block: a reacts 🙂, b reacts 👀.
    await ok(a.c, { type: 'add_group_reaction', messageId: m.id, reaction: '🙂' }, 'group_reaction_added');
    await ok(b.c, { type: 'add_group_reaction', messageId: m.id, reaction: '👀' }, 'group_reaction_added');
    await addBlock(s.app.db, a.id, b.id); // a blocks b
    // During it: b reacts 😡 (b still sees the owner's message), then the owner 😡 and 👍.
    await ok(b.c, { type: 'add_group_reaction', messageId: m.id, reaction: '😡' }, 'group_reaction_added');
    await ok(o.c, { type: 'add_group_reaction', messageId: m.id, reaction: '😡' }, 'group_reaction_added');
    await ok(o.c, { type: 'add_group_reaction', messageId: m.id, reaction: '👍' }, 'group_reaction_added');

    const forA = [
      { reaction: '🙂', count: 1, userIds: [a.id] },
      { reaction: '😡', count: 1, userIds: [o.id] },
      { reaction: '👍', count: 1, userIds: [o.id] },
    ];
    const forB = [
      { reaction: '👀', count: 1, userIds: [b.id] },
      { reaction: '😡', count: 2, userIds: [b.id, o.id] },
      { reaction: '👍', count: 1, userIds: [o.id] },
    ];
    const forO = [
      { reaction: '🙂', count: 1, userIds: [a.id] },
      { reaction: '👀', count: 1, userIds: [b.id] },
      { reaction: '😡', count: 2, userIds: [b.id, o.id] },
      { reaction: '👍', count: 1, userIds: [o.id] },
    ];
    expect(reactionsOf(await groupHistory(a, g.groupId), m.id)).toEqual(forA);
    expect(reactionsOf(await groupHistory(b, g.groupId), m.id)).toEqual(forB);
    expect(reactionsOf(await groupHistory(o, g.groupId), m.id)).toEqual(forO);
    for (const [w, want] of [
      [a, forA],
      [b, forB],
      [o, forO],
    ] as const) {
      const r = await syncUntil(w, undefined, (x) => (reactionsOf(x, m.id) as unknown[] | undefined)?.length === want.length);
      expect(reactionsOf(r, m.id)).toEqual(want);
    }
  });
});

describe('get_user_groups lastMessageAt across a block and deletions (F4)', () => {
  it('is the newest message the caller can see; the list is ordered by it', async () => {
    const g = await makeGroup(s, { members: 2 });
    const [a, b] = g.members as [(typeof g.members)[0], (typeof g.members)[0]];
    const o = g.owner;
    const m0 = await say(o, g.groupId, 'first');
    await sleep(5);
    const m1 = await say(o, g.groupId, 'second');
    await addBlock(s.app.db, a.id, b.id);
    // Another group of a's with a message between m1 and b's hidden one.
    const [o2] = await freshUsers(s, 1);
    const c2 = await s.login(o2!);
    const g2 = await ok(c2, { type: 'create_group', groupName: 'Other', initialMembers: [a.id] }, 'group_created');
    await sleep(5);
    const other = await say({ id: o2!, c: c2 }, g2.groupId as string, 'in the other group');
    await sleep(5);
    const mb = await say(b, g.groupId, 'hidden from a');

    expect((await userGroup(a, g.groupId)).lastMessageAt).toBe(m1.timestamp);
    expect((await userGroup(o, g.groupId)).lastMessageAt).toBe(mb.timestamp);
    expect((await userGroup(b, g.groupId)).lastMessageAt).toBe(mb.timestamp);
    const list = (await ok(a.c, { type: 'get_user_groups' }, 'user_groups')).groups as Frame[];
    expect(list.map((x) => x.groupId)).toEqual([g2.groupId, g.groupId]);
    expect(list[0]!.lastMessageAt).toBe(other.timestamp);

    // Deleted for the caller, then for everyone: left out as well.
    await ok(a.c, { type: 'delete_group_message', messageId: m1.id, deleteForEveryone: false }, 'group_message_deleted');
    expect((await userGroup(a, g.groupId)).lastMessageAt).toBe(m0.timestamp);
    expect((await userGroup(o, g.groupId)).lastMessageAt).toBe(mb.timestamp);
    await ok(o.c, { type: 'delete_group_message', messageId: m0.id, deleteForEveryone: true }, 'group_message_deleted');
    expect((await userGroup(a, g.groupId)).lastMessageAt).toBeNull();
    await ok(o.c, { type: 'delete_group_message', messageId: mb.id, deleteForEveryone: true }, 'group_message_deleted');
    expect((await userGroup(o, g.groupId)).lastMessageAt).toBe(m1.timestamp);
  });

  it('costs a bounded number of rows for a user in 200 groups, whatever the groups hold', async () => {
    const GROUPS = 200;
    const PER_GROUP = 200;
    const HIDDEN_ON_TOP = 5;
    const [u, owner, x] = await freshUsers(s, 3);
    await addBlock(s.app.db, u!, x!);
    const db = s.app.db;
    const ids = Array.from({ length: GROUPS }, (_, i) => `group_cost_${u}_${i}`);
    await db.query(
      `INSERT INTO group_chats (group_id, group_name, created_by_user_id, owner_id, max_members) SELECT id, 'cost', $2, $2, 10 FROM unnest($1::text[]) id`,
      [ids, owner],
    );
    await db.query(`INSERT INTO conversations (conversation_id, kind, last_seq, last_message_at) SELECT id, 'group', $2, now() FROM unnest($1::text[]) id`, [ids, PER_GROUP]);
    await db.query(
      `INSERT INTO group_members (group_id, user_id, role, last_read_seq)
       SELECT id, who, CASE WHEN who = $2 THEN 'owner' ELSE 'member' END, $5 FROM unnest($1::text[]) id, unnest(ARRAY[$2, $3, $4]::text[]) who`,
      [ids, owner, u, x, PER_GROUP],
    );
    // Each group: PER_GROUP messages, the newest HIDDEN_ON_TOP of them from x (blocked by u).
    await db.query(
      `INSERT INTO private_messages (id, conversation_id, seq, sender_id, group_id, key_id, nonce, ciphertext, created_at)
       SELECT gen_random_uuid(), id, q, CASE WHEN q > $2 - $3 THEN $4 ELSE $5 END, id, 'x', '\\x00', '\\x00',
         timestamptz '2026-01-01T00:00:00Z' + make_interval(secs => q + n)
       FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n), generate_series(1, $2::int) q`,
      [ids, PER_GROUP, HIDDEN_ON_TOP, x, owner],
    );
    await db.query('ANALYZE private_messages');
    const c = await s.login(u!);
    const first = await recorder.during(() => ok(c, { type: 'get_user_groups' }, 'user_groups'));
    let r = first.value;
    const rec = first.queries;
    const groups = r.groups as Frame[];
    expect(groups).toHaveLength(GROUPS);
    // Newest visible: seq PER_GROUP - HIDDEN_ON_TOP of each group; group n (1-based) is n seconds later.
    const newest = groups[0]!;
    expect(newest.groupId).toBe(ids[GROUPS - 1]);
    expect(newest.lastMessageAt).toBe(new Date(Date.UTC(2026, 0, 1) + (PER_GROUP - HIDDEN_ON_TOP + GROUPS) * 1000).toISOString());
    expect(groups.every((e) => e.unreadCount === 0)).toBe(true);
    expect(rec).toHaveLength(1);
    const { rowsRead, seqScans } = await planCost(s.app.db, rec[0]!.sql, rec[0]!.params);
    expect(seqScans.filter((t) => t === 'private_messages')).toEqual([]);
    // A scan of each group's messages would read GROUPS * PER_GROUP = 40 000 rows.
    expect(rowsRead).toBeLessThan(GROUPS * 40);

    // Nothing read yet: every group's messages are unread but x's, and counting them
    // reads only the uncounted ones (seqs are gap-free), not the 39 000 unread.
    await db.query('UPDATE group_members SET last_read_seq = 0 WHERE user_id = $1', [u]);
    const second = await recorder.during(() => ok(c, { type: 'get_user_groups' }, 'user_groups'));
    r = second.value;
    const rec2 = second.queries;
    expect((r.groups as Frame[]).every((e) => e.unreadCount === PER_GROUP - HIDDEN_ON_TOP)).toBe(true);
    const unreadCost = await planCost(s.app.db, rec2[0]!.sql, rec2[0]!.params);
    expect(unreadCost.seqScans.filter((t) => t === 'private_messages')).toEqual([]);
    // About 40 rows a group either way (8,205 measured); counting the unread messages
    // themselves read 86,005 (430 a group: each of the 195 unread and its two anti-join probes).
    expect(unreadCost.rowsRead).toBeLessThan(GROUPS * 60);
  });
});
