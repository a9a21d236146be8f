/**
 * Pins per group (audit 6, F3; docs/PROTOCOL-NOTES.md "Pins per group"): a group holds at
 * most MAX_PINS_PER_GROUP pins. An explicit `pin_message` past the cap → GROUP_FULL and
 * nothing changes; an announcement at the cap unpins the oldest pinned announcement (members
 * get `message_unpinned`, the ack names it). `get_pinned_messages` is bounded by the cap and
 * its query reads the group's pins and their messages by primary key: its rows read do not
 * grow with the group's message count.
 */
import { v7 as uuidv7 } from 'uuid';
import { addBlock } from '../../src/store/devData.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { expectError, makeGroup, ok, say, type Crew } from '../helpers/groupkit.ts';
import { planCost, startMeasuredServer, type QueryRecorder } from '../helpers/queryCost.ts';
import type { TestServer } from '../helpers/server.ts';

const CAP = 50; // MAX_PINS_PER_GROUP (src/store/pins.ts), spelled out: the old code has no such export.

let s: TestServer;
let recorder: QueryRecorder;
beforeAll(async () => {
  ({ s, recorder } = await startMeasuredServer({ FOLLOW_POLICY: 'none', PROTOCOL_ERROR_LIMIT: '100000' }));
});
afterAll(() => s?.close());

/**
 * Add `filler` unpinned messages (dummy bodies) and `pins` pinned ones (real bodies
 * `pin <i>`; every `announceEvery`-th one, counting from 0, an announcement) to the group,
 * after its existing messages. Pin i is pinned i minutes after the first (pin 0 the oldest).
 * Resolves the pinned message ids, oldest pin first.
 */
async function seed(g: Crew, filler: number, pins: number, announceEvery = 0): Promise<string[]> {
  const db = s.app.db;
  const { rows } = await db.query<{ last_seq: string }>('SELECT last_seq FROM conversations WHERE conversation_id = $1', [g.groupId]);
  const base = Number(rows[0]?.last_seq ?? 0);
  if (filler > 0) {
    await db.query(
      `INSERT INTO private_messages (id, conversation_id, seq, sender_id, group_id, key_id, nonce, ciphertext)
       SELECT gen_random_uuid(), $1, $2::bigint + q, $3, $1, 'x', '\\x00', '\\x00' FROM generate_series(1, $4::int) q`,
      [g.groupId, base, g.owner.id, filler],
    );
  }
  const cipher = s.app.chat.deps.cipher;
  const ids = Array.from({ length: pins }, () => uuidv7());
  const sealed = ids.map((id, i) => cipher.seal(`pin ${i}`, id));
  await db.query(
    `INSERT INTO private_messages (id, conversation_id, seq, sender_id, group_id, key_id, nonce, ciphertext, is_announcement)
     SELECT id, $1, $2::bigint + $3::bigint + n, $4, $1, k, nonce, ct, $8::int > 0 AND (n - 1) % GREATEST($8::int, 1) = 0
     FROM unnest($5::uuid[], $6::bytea[], $7::bytea[], $9::text[]) WITH ORDINALITY AS t(id, nonce, ct, k, n)`,
    [g.groupId, base, filler, g.owner.id, ids, sealed.map((x) => x.nonce), sealed.map((x) => x.ciphertext), announceEvery, sealed.map((x) => x.keyId)],
  );
  await db.query(
    `INSERT INTO group_pins (group_id, message_id, pinned_by, pinned_at)
     SELECT $1, id, $2, timestamptz '2026-01-01T00:00:00Z' + make_interval(mins => n::int) FROM unnest($3::uuid[]) WITH ORDINALITY AS t(id, n)`,
    [g.groupId, g.owner.id, ids],
  );
  await db.query('UPDATE conversations SET last_seq = $2 WHERE conversation_id = $1', [g.groupId, base + filler + pins]);
  await db.query('ANALYZE private_messages');
  await db.query('ANALYZE group_pins');
  return ids;
}

const pinned = (w: Crew['owner'], groupId: string): Promise<Frame> => ok(w.c, { type: 'get_pinned_messages', groupId }, 'pinned_message');

describe('pins per group (F3)', () => {
  it('an explicit pin at the cap → GROUP_FULL, nothing changes; after an unpin, or a pinned message deleted for everyone, it is accepted', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await say(g.owner, g.groupId, 'first');
    const ids = await seed(g, 0, CAP);
    const extra = await say(g.members[0]!, g.groupId, 'pin me too');
    const e = await expectError(g.admins[0]!.c, { type: 'pin_message', groupId: g.groupId, messageId: extra.id }, 'GROUP_FULL', 'messageId');
    expect(e.message).toContain(String(CAP));
    let list = await pinned(g.members[0]!, g.groupId);
    expect(list.messages).toHaveLength(CAP);
    expect(list.messages.map((m: Frame) => m.id)).toEqual([...ids].reverse());
    // Pinning an already pinned message at the cap is not refused (nothing new).
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: ids[3] }, 'message_pinned');
    // Unpin one: room for the new pin.
    await ok(g.owner.c, { type: 'unpin_message', groupId: g.groupId, messageId: ids[0] }, 'message_unpinned');
    await ok(g.admins[0]!.c, { type: 'pin_message', groupId: g.groupId, messageId: extra.id }, 'message_pinned');
    list = await pinned(g.members[0]!, g.groupId);
    expect(list.messages).toHaveLength(CAP);
    expect(list.message.id).toBe(extra.id);
    // Full again; a pinned message deleted for everyone gives its place up.
    const another = await say(g.owner, g.groupId, 'and me');
    await expectError(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: another.id }, 'GROUP_FULL', 'messageId');
    await ok(g.owner.c, { type: 'delete_group_message', messageId: ids[1], deleteForEveryone: true }, 'group_message_deleted');
    await ok(g.owner.c, { type: 'pin_message', groupId: g.groupId, messageId: another.id }, 'message_pinned');
    list = await pinned(g.members[0]!, g.groupId);
    expect(list.messages).toHaveLength(CAP);
    expect(list.messages.slice(0, 2).map((m: Frame) => m.id)).toEqual([another.id, extra.id]);
  });

  it('an announcement at the cap unpins the oldest pinned announcement: message_unpinned to members, unpinnedMessageId in the ack', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await say(g.owner, g.groupId, 'first');
    // Pin 0 (the oldest) is a plain message; pins 1, 4, 7, … are announcements.
    const ids = await seed(g, 0, CAP, 3);
    await s.app.db.query('UPDATE private_messages SET is_announcement = false WHERE id = $1', [ids[0]]);
    await s.app.db.query('UPDATE private_messages SET is_announcement = true WHERE id = $1', [ids[1]]);
    const member = g.members[0]!;
    member.c.clear();
    const r = await ok(g.admins[0]!.c, { type: 'send_announcement', groupId: g.groupId, content: 'big news' }, 'announcement_sent');
    expect(r.unpinnedMessageId).toBe(ids[1]);
    const unpinned = await member.c.next('message_unpinned');
    expect(unpinned).toMatchObject({ messageId: ids[1], groupId: g.groupId, unpinnedBy: g.admins[0]!.id, reason: 'pin_limit' });
    const ann = await member.c.next('new_announcement');
    expect(ann.message.id).toBe(r.message.id);
    const list = await pinned(member, g.groupId);
    expect(list.messages).toHaveLength(CAP);
    expect(list.message).toMatchObject({ id: r.message.id, isAnnouncement: true, content: 'big news' });
    const listed = list.messages.map((m: Frame) => m.id);
    expect(listed).toContain(ids[0]); // the older plain pin stays
    expect(listed).not.toContain(ids[1]);
    // The evicted message shows unpinned in history.
    const h = await ok(member.c, { type: 'get_group_messages', groupId: g.groupId, limit: 100 }, 'group_messages');
    expect(h.messages.find((m: Frame) => m.id === ids[1])?.isPinned).toBe(false);
    expect(await count(g.groupId)).toBe(CAP);
  });

  it("an announcement at the cap whose evicted pin is from a user in a block with the announcer: the ack does not name it; other members are told", async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    await say(g.owner, g.groupId, 'first');
    const ids = await seed(g, 0, CAP, 1); // every pin an announcement by the owner
    const admin = g.admins[0]!;
    await addBlock(s.app.db, admin.id, g.owner.id);
    const member = g.members[0]!;
    member.c.clear();
    const r = await ok(admin.c, { type: 'send_announcement', groupId: g.groupId, content: 'news' }, 'announcement_sent');
    expect(r.unpinnedMessageId).toBeUndefined();
    expect(await member.c.next('message_unpinned')).toMatchObject({ messageId: ids[0], reason: 'pin_limit' });
    expect(await count(g.groupId)).toBe(CAP);
  });

  it('get_pinned_messages is bounded by the cap (a group pinned past it before the cap existed), newest first', async () => {
    const g = await makeGroup(s, { members: 1 });
    await say(g.owner, g.groupId, 'first');
    const ids = await seed(g, 0, 4 * CAP);
    const list = await pinned(g.members[0]!, g.groupId);
    expect(list.messages).toHaveLength(CAP);
    expect(list.messages.map((m: Frame) => m.id)).toEqual([...ids].reverse().slice(0, CAP));
    expect(list.messages[0]).toMatchObject({ content: `pin ${4 * CAP - 1}`, pinnedBy: g.owner.id, isAnnouncement: false });
    expect(JSON.stringify(list).length).toBeLessThan(CAP * 600);
  });

  it("the list query's rows read do not grow with the group's message count (no scan of its history)", async () => {
    // A group pinned far past the cap before it existed (1,000 pins): the old plan then hashed
    // the whole message table (audit 6: 5,000 pins, 60,000 rows read).
    const PINS = 1000;
    const cost = async (filler: number): Promise<{ rowsRead: number; messageRows: number; pinRows: number; seqScans: string[] }> => {
      const g = await makeGroup(s, { members: 1 });
      await say(g.owner, g.groupId, 'first');
      await seed(g, filler, PINS);
      const { value: r, queries: rec } = await recorder.during(() => pinned(g.members[0]!, g.groupId));
      expect(r.messages).toHaveLength(CAP);
      const q = rec.filter((x) => /group_pins/.test(x.sql));
      expect(q).toHaveLength(1);
      const c = await planCost(s.app.db, q[0]!.sql, q[0]!.params);
      const e = { rowsRead: c.rowsRead, messageRows: c.byRelation.private_messages ?? 0, pinRows: c.byRelation.group_pins ?? 0, seqScans: c.seqScans.filter((t) => t === 'private_messages') };
      if (process.env.SHOW_PLAN) console.log('COST', filler, r.messages.length, e);
      return e;
    };
    const small = await cost(100);
    const big = await cost(20_000);
    // The newest pins' messages by primary key, stopping at the cap (the old plan read every
    // message of the table, or at least every pinned one).
    expect(big.seqScans).toEqual([]);
    expect(big.messageRows).toBeLessThanOrEqual(CAP);
    expect(big.messageRows).toBeLessThanOrEqual(small.messageRows);
    // group_pins: the group's pins (its primary-key prefix; the whole table while it is small).
    // The rest: the floor, the viewer's deletions, the senders.
    expect(big.rowsRead - big.pinRows).toBeLessThan(CAP * 4);
  });
});

/** Pins held by the group. */
async function count(groupId: string): Promise<number> {
  const { rows } = await s.app.db.query<{ n: number }>('SELECT count(*)::int AS n FROM group_pins WHERE group_id = $1', [groupId]);
  return rows[0]!.n;
}
