/**
 * PROTOCOL §9 sync gaps (regressions): deletions "for me" reach the deleter's other
 * devices as tombstones (and nobody else); members learn through sync that a group was
 * deleted or restored; more group changes than a page holds are paged with the cursor,
 * never dropped; a forged cursor is BAD_REQUEST (field cursor), never INTERNAL_ERROR.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCursor } from '../../src/chat/cursor.ts';
import { recordGroupChangeForMembers } from '../../src/store/sync.ts';
import type { Frame, TestClient } from '../helpers/client.ts';
import { freshUsers, sendOk } from '../helpers/dmkit.ts';
import { ok } from '../helpers/groupkit.ts';
import { startServer, sleep, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ FOLLOW_POLICY: 'none' });
});
afterAll(() => s?.close());

/** Everything one or more `sync` pages returned. */
interface Drained {
  messages: Frame[];
  changes: Frame[];
  cursor: string;
  pages: number;
}

/** Sync from `cursor` page by page until hasMore is false. */
async function drain(c: TestClient, cursor: string, limit: number): Promise<Drained> {
  const out: Drained = { messages: [], changes: [], cursor, pages: 0 };
  for (let i = 0; i < 1000; i++) {
    const r = await ok(c, { type: 'sync', cursor: out.cursor, limit }, 'sync_result');
    out.messages.push(...(r.messages as Frame[]));
    out.changes.push(...(r.changes as Frame[]));
    out.pages++;
    out.cursor = r.cursor as string;
    if (!r.hasMore) return out;
  }
  throw new Error('sync did not finish');
}

/**
 * Drain from `cursor` again and again until `pred` holds over everything returned
 * (bounded): sync returns a change once it is below the snapshot xmin, which another
 * test database's transaction on the shared server can hold back for a moment.
 */
async function drainUntil(c: TestClient, cursor: string, pred: (d: Drained) => boolean, limit = 100): Promise<Drained> {
  const acc: Drained = { messages: [], changes: [], cursor, pages: 0 };
  const end = Date.now() + 8000;
  for (;;) {
    const d = await drain(c, acc.cursor, limit);
    acc.messages.push(...d.messages);
    acc.changes.push(...d.changes);
    acc.pages += d.pages;
    acc.cursor = d.cursor;
    if (pred(acc)) return acc;
    if (Date.now() > end) throw new Error(`sync condition not met: ${JSON.stringify(acc).slice(0, 1500)}`);
    await sleep(50);
  }
}

const has = (id: string) => (d: Drained): boolean => d.messages.some((m) => m.messageId === id);

/** Log in `userId` on a second connection and resolve it with its auth_success cursor. */
async function device(userId: string): Promise<{ c: TestClient; cursor: string }> {
  const c = await s.connect();
  const r = await c.request({ type: 'authenticate', token: s.token(userId) });
  expect(r.type).toBe('auth_success');
  return { c, cursor: r.cursor as string };
}

describe('sync: deletions for me', () => {
  it("delete_message for me: the deleter's other device gets a tombstone, the other participant nothing", async () => {
    const [a, b] = await freshUsers(s, 2);
    const ca = await s.login(a!);
    const b1 = await s.login(b!);
    const b2 = await device(b!);
    const a2 = await device(a!);
    const m = await sendOk(ca, b!, 'to hide');
    const bSeen = await drainUntil(b2.c, b2.cursor, has(m.messageId));
    const aSeen = await drainUntil(a2.c, a2.cursor, has(m.messageId));
    await ok(b1, { type: 'delete_message', messageId: m.messageId, deleteForEveryone: false }, 'message_deleted');
    const marker = await sendOk(ca, b!, 'marker');
    const bAfter = await drainUntil(b2.c, bSeen.cursor, has(marker.messageId));
    expect(bAfter.messages.filter((x) => x.messageId === m.messageId)).toEqual([
      { messageId: m.messageId, id: m.messageId, conversationId: m.conversationId, groupId: null, seq: 1, isDeleted: true },
    ]);
    const aAfter = await drainUntil(a2.c, aSeen.cursor, has(marker.messageId));
    expect(aAfter.messages.map((x) => x.messageId)).toEqual([marker.messageId]);
  });

  it("delete_conversation for me: a tombstone per hidden message, paged (limit 1) without repeats; a repeat hides nothing new and sends nothing", async () => {
    const [a, b] = await freshUsers(s, 2);
    const ca = await s.login(a!);
    const b1 = await s.login(b!);
    const b2 = await device(b!);
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push(await sendOk(i % 2 ? b1 : ca, i % 2 ? a! : b!, `m${i}`));
    const ids = sent.map((m) => m.messageId as string);
    const seen = await drainUntil(b2.c, b2.cursor, (d) => ids.every((id) => has(id)(d)));
    const cid = sent[0]!.conversationId;
    await ok(b1, { type: 'delete_conversation', conversationId: cid, deleteForEveryone: false }, 'conversation_deleted');
    const marker = await sendOk(ca, b!, 'marker');
    const after = await drainUntil(b2.c, seen.cursor, has(marker.messageId), 1);
    const tombs = after.messages.filter((x) => x.isDeleted === true);
    expect(tombs.map((x) => x.messageId).sort()).toEqual([...ids].sort());
    expect(tombs.every((x) => x.conversationId === cid && x.content === undefined)).toBe(true);
    expect(after.messages.find((x) => x.messageId === marker.messageId)).toMatchObject({ content: 'marker' });
    // Deleting again hides only the marker: one tombstone, not six.
    await ok(b1, { type: 'delete_conversation', conversationId: cid, deleteForEveryone: false }, 'conversation_deleted');
    await ok(b1, { type: 'delete_conversation', conversationId: cid, deleteForEveryone: false }, 'conversation_deleted');
    const marker2 = await sendOk(ca, b!, 'marker 2');
    const again = await drainUntil(b2.c, after.cursor, has(marker2.messageId));
    expect(again.messages.map((x) => [x.messageId, x.isDeleted === true])).toEqual([
      [marker.messageId, true],
      [marker2.messageId, false],
    ]);
    // The other participant's stream has nothing of b's deletions.
    const a2 = await device(a!);
    const aAll = await drainUntil(a2.c, encodeCursor({ x: '0', i: '', t: Date.now() }), has(marker2.messageId));
    expect(aAll.messages.filter((x) => x.isDeleted === true)).toEqual([]);
  });

  it('a device that missed two deletions of a conversation gets a tombstone for every hidden message, whatever the page boundaries (audit 4)', async () => {
    const [a, b, c] = await freshUsers(s, 3);
    const ca = await s.login(a!);
    const cc = await s.login(c!);
    const b1 = await s.login(b!);
    const b2 = await device(b!);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await sendOk(ca, b!, `m${i}`)).messageId as string);
    const seen = await drainUntil(b2.c, b2.cursor, (d) => ids.every((id) => has(id)(d)));
    const cid = (await sendOk(ca, b!, 'm4')).conversationId as string;
    await ok(b1, { type: 'delete_conversation', conversationId: cid, deleteForEveryone: false }, 'conversation_deleted');
    // Other traffic between the deletions: page boundaries fall between them too.
    for (let i = 0; i < 5; i++) await sendOk(cc, b!, `other ${i}`);
    for (let i = 5; i < 7; i++) ids.push((await sendOk(ca, b!, `m${i}`)).messageId as string);
    await ok(b1, { type: 'delete_conversation', conversationId: cid, deleteForEveryone: false }, 'conversation_deleted');
    const marker = await sendOk(cc, b!, 'marker');
    for (const limit of [1, 2, 3, 100]) {
      const back = await drainUntil(b2.c, seen.cursor, has(marker.messageId as string), limit);
      const state = new Map<string, Frame>();
      for (const m of [...seen.messages, ...back.messages]) state.set(m.messageId as string, m);
      const visible = [...state.values()].filter((m) => m.conversationId === cid && m.isDeleted !== true).map((m) => m.content);
      expect(visible, `limit ${limit}`).toEqual([]);
    }
  });

  it("delete_group_message for me: the deleter's other device gets a tombstone", async () => {
    const [o, m] = await freshUsers(s, 2);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const cm1 = await s.login(m!);
    const cm2 = await device(m!);
    const g = await ok(co, { type: 'create_group', groupName: 'G', initialMembers: [m!] }, 'group_created');
    const sent = await ok(co, { type: 'send_group_message', groupId: g.groupId, content: 'hello' }, 'group_message_sent');
    const id = sent.message.id as string;
    const first = await drainUntil(cm2.c, cm2.cursor, has(id));
    await ok(cm1, { type: 'delete_group_message', messageId: id, deleteForEveryone: false }, 'group_message_deleted');
    const marker = await ok(co, { type: 'send_group_message', groupId: g.groupId, content: 'marker' }, 'group_message_sent');
    const after = await drainUntil(cm2.c, first.cursor, has(marker.message.id));
    expect(after.messages.find((x) => x.messageId === id)).toMatchObject({ messageId: id, groupId: g.groupId, isDeleted: true });
  });
});

describe('sync: group deletion and restore', () => {
  it('a member syncing after a soft delete gets group_deleted, and group_restored after the restore', async () => {
    const [o, m, x] = await freshUsers(s, 3);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const cx = await s.login(x!);
    const cm = await device(m!);
    const g = await ok(co, { type: 'create_group', groupName: 'D', initialMembers: [m!] }, 'group_created');
    const first = await drainUntil(cm.c, cm.cursor, (d) => d.changes.some((c) => c.groupId === g.groupId));
    await ok(co, { type: 'delete_group', groupId: g.groupId }, 'group_deleted');
    const marker = await sendOk(cx, m!, 'marker');
    const after = await drainUntil(cm.c, first.cursor, has(marker.messageId));
    expect(after.changes.filter((c) => c.groupId === g.groupId)).toEqual([{ type: 'group_deleted', groupId: g.groupId, actorId: o, timestamp: expect.any(String) }]);
    await ok(co, { type: 'restore_group', groupId: g.groupId }, 'group_restored');
    const marker2 = await sendOk(cx, m!, 'marker 2');
    const restored = await drainUntil(cm.c, after.cursor, has(marker2.messageId));
    expect(restored.changes.filter((c) => c.groupId === g.groupId).map((c) => c.type)).toEqual(['group_restored']);
  });

  /** Owner `o` (co), member `m` (cmLive, and device cm with its auth cursor), outsider x (cx), and their group. */
  async function groupWithMember(): Promise<{ m: string; co: TestClient; cx: TestClient; cmLive: TestClient; cm: { c: TestClient; cursor: string }; gid: string }> {
    const [o, m, x] = await freshUsers(s, 3);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const cx = await s.login(x!);
    const cmLive = await s.login(m!);
    const cm = await device(m!);
    const gid = (await ok(co, { type: 'create_group', groupName: 'G', initialMembers: [m!] }, 'group_created')).groupId as string;
    return { m: m!, co, cx, cmLive, cm, gid };
  }

  for (const how of ['soft delete', 'removal', 'leaving'] as const) {
    it(`group changes made while a member reach a device that syncs only after a ${how} (audit 4), and nothing after it`, async () => {
      const { m, co, cx, cmLive, cm, gid } = await groupWithMember();
      const sent = async (content: string) => (await ok(co, { type: 'send_group_message', groupId: gid, content }, 'group_message_sent')).message.messageId as string;
      const [gm1, gm2] = [await sent('gm1'), await sent('gm2')];
      const first = await drainUntil(cm.c, cm.cursor, (d) => has(gm1)(d) && has(gm2)(d));
      // The device is away; while m is a member: one deleted for everyone, one edited.
      await ok(co, { type: 'delete_group_message', messageId: gm1, deleteForEveryone: true }, 'group_message_deleted');
      await ok(co, { type: 'edit_group_message', messageId: gm2, newContent: 'gm2 edited' }, 'group_message_edited');
      if (how === 'soft delete') await ok(co, { type: 'delete_group', groupId: gid }, 'group_deleted');
      if (how === 'removal') await ok(co, { type: 'remove_group_member', groupId: gid, userId: m }, 'member_removed');
      if (how === 'leaving') await ok(cmLive, { type: 'leave_group', groupId: gid }, 'left_group');
      const later = how === 'soft delete' ? undefined : await sent('after they went');
      const marker = await sendOk(cx, m!, 'marker');
      const back = await drainUntil(cm.c, first.cursor, has(marker.messageId as string), 1);
      const state = new Map<string, Frame>();
      for (const msg of [...first.messages, ...back.messages]) state.set(msg.messageId as string, msg);
      expect(state.get(gm1)).toMatchObject({ isDeleted: true });
      expect(state.get(gm2)).toMatchObject({ content: 'gm2 edited' });
      if (later) expect(state.has(later)).toBe(false);
    });
  }

  it('a member who left twice since the cursor gets every message from before, across pages (one entry per message, none lost)', async () => {
    const { m, co, cx, cmLive, cm, gid } = await groupWithMember();
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) ids.push((await ok(co, { type: 'send_group_message', groupId: gid, content: `g${i}` }, 'group_message_sent')).message.messageId as string);
    await ok(cmLive, { type: 'leave_group', groupId: gid }, 'left_group');
    await ok(co, { type: 'add_group_member', groupId: gid, userId: m }, 'member_added');
    await ok(cmLive, { type: 'leave_group', groupId: gid }, 'left_group');
    const marker = await sendOk(cx, m!, 'marker');
    const back = await drainUntil(cm.c, cm.cursor, has(marker.messageId as string), 20);
    const got = back.messages.filter((x) => x.groupId === gid).map((x) => x.messageId);
    expect(new Set(got)).toEqual(new Set(ids));
    expect(got).toHaveLength(ids.length);
  });

  it('membership is read in the statement: a group list read before a removal brings no message sent after it', async () => {
    const [o, m] = await freshUsers(s, 2);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const gid = (await ok(co, { type: 'create_group', groupName: 'R', initialMembers: [m!] }, 'group_created')).groupId as string;
    const before = (await ok(co, { type: 'send_group_message', groupId: gid, content: 'before' }, 'group_message_sent')).message.messageId as string;
    const stale = await s.app.chat.deps.stores.groups.groupIdsOf(m!);
    expect(stale).toContain(gid);
    await ok(co, { type: 'remove_group_member', groupId: gid, userId: m }, 'member_removed');
    const after = (await ok(co, { type: 'send_group_message', groupId: gid, content: 'after' }, 'group_message_sent')).message.messageId as string;
    let ids: string[] = [];
    const end = Date.now() + 5000;
    while (!ids.includes(before) && Date.now() < end) {
      ids = (await s.app.chat.deps.stores.sync.changes(m!, stale, '0', '', 500)).rows.map((r) => r.record.id);
      await sleep(25);
    }
    expect(ids).toContain(before);
    expect(ids).not.toContain(after);
  });

  it('a whole-group change recorded per member (recordGroupChangeForMembers) as well as for the group reaches each member once, also after the group is gone', async () => {
    const [o, m, w] = await freshUsers(s, 3);
    await s.follow([o!, m!], [o!, w!]);
    const co = await s.login(o!);
    const cm = await device(m!);
    const g = await ok(co, { type: 'create_group', groupName: 'H', initialMembers: [m!, w!] }, 'group_created');
    const first = await drainUntil(cm.c, cm.cursor, (d) => d.changes.some((c) => c.groupId === g.groupId));
    // What GroupStore.hardDelete does, with the per-member record it needs (see recordGroupChangeForMembers).
    await s.app.db.transaction(async (tx) => {
      expect(await recordGroupChangeForMembers(tx, g.groupId, 'group_deleted', o!)).toBe(3);
      await tx.query('DELETE FROM group_chats WHERE group_id = $1', [g.groupId]);
      await tx.query('DELETE FROM conversations WHERE conversation_id = $1', [g.groupId]);
      await tx.query(`INSERT INTO group_changes (group_id, user_id, kind, actor_id) VALUES ($1, NULL, 'group_deleted', $2)`, [g.groupId, o!]);
    });
    const marker = await sendOk(co, m!, 'marker');
    const after = await drainUntil(cm.c, first.cursor, has(marker.messageId));
    expect(after.changes.filter((c) => c.groupId === g.groupId)).toEqual([{ type: 'group_deleted', groupId: g.groupId, actorId: o, timestamp: expect.any(String) }]);
    await expect(recordGroupChangeForMembers(s.app.db, g.groupId, 'member_added', o!)).rejects.toThrow(/not a whole-group change/);
  });

  // GroupStore.hardDelete records the change for each member before their rows go with the group.
  it('a member syncing after a permanent delete gets group_deleted', async () => {
    const [o, m, x] = await freshUsers(s, 3);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const cx = await s.login(x!);
    const cm = await device(m!);
    const g = await ok(co, { type: 'create_group', groupName: 'P', initialMembers: [m!] }, 'group_created');
    const first = await drainUntil(cm.c, cm.cursor, (d) => d.changes.some((c) => c.groupId === g.groupId));
    await ok(co, { type: 'delete_group', groupId: g.groupId, permanent: true }, 'group_deleted');
    const marker = await sendOk(cx, m!, 'marker');
    const after = await drainUntil(cm.c, first.cursor, has(marker.messageId));
    expect(after.changes.filter((c) => c.groupId === g.groupId).map((c) => c.type)).toEqual(['group_deleted']);
  });
});

describe('sync: group changes are paged with the cursor', () => {
  it('more than 500 membership changes between two syncs: every one is returned once', async () => {
    const [o, m, w] = await freshUsers(s, 3);
    await s.follow([o!, m!], [o!, w!]);
    const co = await s.login(o!);
    const cw = await device(w!);
    const g = await ok(co, { type: 'create_group', groupName: 'R', initialMembers: [m!, w!] }, 'group_created');
    const first = await drainUntil(cw.c, cw.cursor, (d) => d.changes.some((c) => c.groupId === g.groupId));
    const N = 520;
    for (let i = 0; i < N; i++) await ok(co, { type: i % 2 ? 'demote_member' : 'promote_member', groupId: g.groupId, userId: m! }, i % 2 ? 'member_demoted' : 'member_promoted');
    const marker = await sendOk(co, w!, 'marker');
    const after = await drainUntil(cw.c, first.cursor, has(marker.messageId));
    const roles = after.changes.filter((c) => c.groupId === g.groupId && c.type === 'role_changed').map((c) => c.role);
    expect(roles).toEqual(Array.from({ length: N }, (_, i) => (i % 2 ? 'member' : 'admin')));
    expect(after.pages).toBeGreaterThan(5);
  }, 120_000);

  it('1,200 changes written by one transaction are paged inside it (limit 100), none lost or repeated', async () => {
    const [o, m] = await freshUsers(s, 2);
    await s.follow([o!, m!]);
    const co = await s.login(o!);
    const cm = await device(m!);
    const g = await ok(co, { type: 'create_group', groupName: 'T', initialMembers: [m!] }, 'group_created');
    const first = await drainUntil(cm.c, cm.cursor, (d) => d.changes.some((c) => c.groupId === g.groupId));
    await s.app.db.query(
      `INSERT INTO group_changes (group_id, user_id, kind, actor_id, role) SELECT $1, $2, 'role_changed', $3, 'r' || i FROM generate_series(1, 1200) i ORDER BY i`,
      [g.groupId, m!, o!],
    );
    const marker = await sendOk(co, m!, 'marker');
    const after = await drainUntil(cm.c, first.cursor, has(marker.messageId), 100);
    const roles = after.changes.filter((c) => c.groupId === g.groupId).map((c) => c.role);
    expect(roles).toEqual(Array.from({ length: 1200 }, (_, i) => `r${i + 1}`));
    expect(after.pages).toBeGreaterThanOrEqual(12);
  });
});

describe('sync: forged cursors', () => {
  const t = Date.now();
  const bad: [string, string][] = [
    ['message id that is not a UUID (36 dashes)', encodeCursor({ x: '1', i: '-'.repeat(36), t })],
    ['xid above 2^64-1', encodeCursor({ x: '18446744073709551616', i: '', t })],
    ['xid of 20 nines', encodeCursor({ x: '99999999999999999999', i: '', t })],
    ['group change id above BIGINT', encodeCursor({ x: '1', i: '', t, g: '9223372036854775808' })],
    ['group change id 0', encodeCursor({ x: '1', i: '', t, g: '0' })],
    ['group change id with a message id', encodeCursor({ x: '1', i: '01890000-0000-7000-8000-000000000000', t, g: '5' })],
    ['five elements', Buffer.from(JSON.stringify(['1', '', t, '1', 'x'])).toString('base64url')],
  ];
  for (const [name, cursor] of bad) {
    it(`${name} → BAD_REQUEST field cursor`, async () => {
      const [u] = await freshUsers(s, 1);
      const c = await s.login(u!);
      const r = await c.request({ type: 'sync', cursor });
      expect(r, JSON.stringify(r)).toMatchObject({ type: 'error', code: 'BAD_REQUEST', field: 'cursor' });
    });
  }

  it('the largest xid8 and a three-element cursor (the form auth_success gives) are accepted', async () => {
    const [u] = await freshUsers(s, 1);
    const c = await s.login(u!);
    await ok(c, { type: 'sync', cursor: encodeCursor({ x: '18446744073709551615', i: 'ffffffff-ffff-ffff-ffff-ffffffffffff', t: Date.now() }) }, 'sync_result');
    await ok(c, { type: 'sync', cursor: Buffer.from(JSON.stringify(['1', '', Date.now()])).toString('base64url') }, 'sync_result');
  });
});
