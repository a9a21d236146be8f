/**
 * PROTOCOL §6 rules: "Retrying a send with the same clientMessageId returns the original
 * ack with duplicate:true" also when the sender would now be refused (audit 5, F3;
 * docs/PROTOCOL-NOTES.md "A retry is answered before limits and relationship checks"):
 * over MESSAGE_RATE_LIMIT, after a block or an unfollow, after removal from the group or
 * losing the admin role (`send_announcement`). A new message is still refused; a key used
 * elsewhere is still BAD_REQUEST; nothing is stored or delivered again. Over the send
 * budget, each such retry costs a point of READ_RATE_LIMIT (it is a lookup) instead.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock, removeFollows } from '../../src/store/devData.ts';
import type { Frame } from '../helpers/client.ts';
import { expectError, freshUsers, messagesFrom, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { makeGroup, ok } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const LIMIT = 3;
let s: TestServer;
beforeAll(async () => {
  s = await startServer({ MESSAGE_RATE_LIMIT: String(LIMIT), PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

const dm = (to: string, content: string, clientMessageId?: string) => ({ type: 'send_private_message', recipientId: to, content, ...(clientMessageId ? { clientMessageId } : {}) });
const isNew = (f: Frame): boolean => f.type === 'new_private_message' || f.type === 'new_group_message' || f.type === 'new_announcement';

describe('a retry of a stored send is answered before limits and relationship checks', () => {
  it('over MESSAGE_RATE_LIMIT: the retry gets the original ack (duplicate:true) every time; new messages stay RATE_LIMITED', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const [c] = await freshUsers(s, 1);
    await s.follow([a, c!]);
    const first = await sendOk(ca, b, 'one', { clientMessageId: 'k1' });
    await sendOk(ca, c!, 'elsewhere', { clientMessageId: 'k-c' });
    await sendOk(ca, b, 'three');
    await expectError(ca, dm(b, 'four'), 'RATE_LIMITED');
    for (let i = 0; i < 3; i++) {
      const again = await ca.request(dm(b, 'one', 'k1'));
      expect(again, JSON.stringify(again)).toMatchObject({ type: 'private_message_sent', duplicate: true, messageId: first.messageId, clientMessageId: 'k1' });
      expect(again.message).toEqual(first.message);
    }
    const refused = await expectError(ca, dm(b, 'new', 'k-new'), 'RATE_LIMITED');
    expect(refused.retryAfter).toBeGreaterThanOrEqual(1);
    // A key used in another conversation is still not a retry.
    await expectError(ca, dm(b, 'x', 'k-c'), 'BAD_REQUEST', 'clientMessageId');
    expect(await messagesFrom(s, a)).toBe(LIMIT);
    await cb.next('new_private_message');
    await cb.next('new_private_message');
    await cb.none('new_private_message', 300);
  });

  it('after a block (either direction) or an unfollow: the retry gets the original ack; a new message is refused', async () => {
    for (const how of ['sender blocks', 'recipient blocks', 'unfollow'] as const) {
      const { a, b, ca, cb } = await mutualPair(s);
      const first = await sendOk(ca, b, 'stored', { clientMessageId: 'k9' });
      await cb.next('new_private_message');
      if (how === 'sender blocks') await addBlock(s.app.db, a, b);
      else if (how === 'recipient blocks') await addBlock(s.app.db, b, a);
      else await removeFollows(s.app.db, [[a, b]]);
      const again = await ca.request(dm(b, 'stored', 'k9'));
      expect(again, how).toMatchObject({ type: 'private_message_sent', duplicate: true, messageId: first.messageId });
      await expectError(ca, dm(b, 'new', 'k10'), how === 'unfollow' ? 'NOT_FOLLOWING' : 'USER_BLOCKED');
      expect(await messagesFrom(s, a)).toBe(1);
      await cb.none(isNew, 200);
    }
  });

  it('groups: after removal from the group, and send_announcement after losing the admin role, the retry gets the original ack', async () => {
    const g = await makeGroup(s, { admins: 1, members: 1 });
    const admin = g.admins[0]!;
    const member = g.members[0]!;
    const sent = await ok(member.c, { type: 'send_group_message', groupId: g.groupId, content: 'hello', clientMessageId: 'gk1' }, 'group_message_sent');
    const ann = await ok(admin.c, { type: 'send_announcement', groupId: g.groupId, content: 'news', clientMessageId: 'gk2' }, 'announcement_sent');
    await ok(g.owner.c, { type: 'demote_member', groupId: g.groupId, userId: admin.id }, 'member_demoted');
    const annAgain = await ok(admin.c, { type: 'send_announcement', groupId: g.groupId, content: 'news', clientMessageId: 'gk2' }, 'announcement_sent');
    expect(annAgain).toMatchObject({ duplicate: true, message: { id: ann.message.id, isAnnouncement: true } });
    await expectError(admin.c, { type: 'send_announcement', groupId: g.groupId, content: 'more news', clientMessageId: 'gk3' }, 'INSUFFICIENT_PERMISSIONS');
    await ok(g.owner.c, { type: 'remove_group_member', groupId: g.groupId, userId: member.id }, 'member_removed');
    const again = await ok(member.c, { type: 'send_group_message', groupId: g.groupId, content: 'hello', clientMessageId: 'gk1' }, 'group_message_sent');
    expect(again).toMatchObject({ duplicate: true, message: { id: sent.message.id, groupId: g.groupId, content: 'hello' } });
    await expectError(member.c, { type: 'send_group_message', groupId: g.groupId, content: 'new', clientMessageId: 'gk4' }, 'NOT_FOUND');
    expect(await messagesFrom(s, member.id)).toBe(1);
    expect(await messagesFrom(s, admin.id)).toBe(1);
    g.owner.c.clear();
    await g.owner.c.none(isNew, 200);
  });

  it('groups over MESSAGE_RATE_LIMIT: the retry gets the original ack; a new message stays RATE_LIMITED', async () => {
    const g = await makeGroup(s, { members: 1 });
    const m = g.members[0]!;
    const first = await ok(m.c, { type: 'send_group_message', groupId: g.groupId, content: 'g1', clientMessageId: 'gr1' }, 'group_message_sent');
    for (let i = 1; i < LIMIT; i++) await ok(m.c, { type: 'send_group_message', groupId: g.groupId, content: `g${i + 1}` }, 'group_message_sent');
    await expectError(m.c, { type: 'send_group_message', groupId: g.groupId, content: 'over' }, 'RATE_LIMITED');
    const again = await ok(m.c, { type: 'send_group_message', groupId: g.groupId, content: 'g1', clientMessageId: 'gr1' }, 'group_message_sent');
    expect(again).toMatchObject({ duplicate: true, message: { id: first.message.id } });
    await expectError(m.c, { type: 'send_group_message', groupId: g.groupId, content: 'over', clientMessageId: 'gr-new' }, 'RATE_LIMITED');
    expect(await messagesFrom(s, m.id)).toBe(LIMIT);
  });
});

describe('READ_RATE_LIMIT bounds the lookups of retries over the send budget', () => {
  let s2: TestServer;
  beforeAll(async () => {
    s2 = await startServer({ MESSAGE_RATE_LIMIT: '1', READ_RATE_LIMIT: '2' });
  });
  afterAll(() => s2?.close());

  it('each retry over the send budget takes a read point; with none left the answer is RATE_LIMITED', async () => {
    const { b, ca } = await mutualPair(s2);
    const first = await sendOk(ca, b, 'one', { clientMessageId: 'r1' });
    for (let i = 0; i < 2; i++) expect(await ca.request(dm(b, 'one', 'r1'))).toMatchObject({ type: 'private_message_sent', duplicate: true, messageId: first.messageId });
    await expectError(ca, dm(b, 'one', 'r1'), 'RATE_LIMITED');
  });
});
