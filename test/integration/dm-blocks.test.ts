/**
 * PROTOCOL §5 for direct messages after a block (audit 5, F1; docs/PROTOCOL-NOTES.md
 * "Direct messages across a block"): the conversation's history stays, but nothing new
 * crosses the block. Reactions and edits are refused with `USER_BLOCKED` (as a send is);
 * read and delivery receipts are recorded for the caller but the other participant is
 * not told; a user may still delete their own messages (the tombstone goes to both, it
 * only removes content). A failing block lookup refuses (SERVICE_UNAVAILABLE) and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock, removeBlock } from '../../src/store/devData.ts';
import type { TestClient } from '../helpers/client.ts';
import { count, dmEvent, expectError, history, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ EDIT_WINDOW_MS: '0', PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

/** A mutual pair with one message each way, frames cleared: `mA` from a, `mB` from b. */
async function talked(): Promise<{ a: string; b: string; ca: TestClient; cb: TestClient; mA: string; mB: string }> {
  const p = await mutualPair(s);
  const mA = (await sendOk(p.ca, p.b, 'from a')).messageId as string;
  const mB = (await sendOk(p.cb, p.a, 'from b')).messageId as string;
  await p.ca.next('new_private_message');
  await p.cb.next('new_private_message');
  p.ca.clear();
  p.cb.clear();
  return { ...p, mA, mB };
}

describe('direct messages across a block', () => {
  it('add_reaction, remove_reaction and edit → USER_BLOCKED, for the blocked user and the blocker; nothing stored, nobody told', async () => {
    const { a, b, ca, cb, mA, mB } = await talked();
    // A reaction from before the block, to try removing it during the block.
    expect((await cb.request({ type: 'add_reaction', messageId: mA, reaction: '👍' })).type).toBe('reaction_added');
    await ca.next('reaction_added');
    await addBlock(s.app.db, a, b); // a blocks b
    for (const [c, own, other] of [
      [cb, mB, mA],
      [ca, mA, mB],
    ] as const) {
      await expectError(c, { type: 'add_reaction', messageId: other, reaction: '🖕' }, 'USER_BLOCKED');
      await expectError(c, { type: 'add_reaction', messageId: own, emoji: '🖕' }, 'USER_BLOCKED');
      await expectError(c, { type: 'edit_message', messageId: own, newContent: 'new text after block' }, 'USER_BLOCKED');
      await expectError(c, { type: 'edit_private_message', messageId: own, content: 'again' }, 'USER_BLOCKED');
    }
    await expectError(cb, { type: 'remove_reaction', messageId: mA, reaction: '👍' }, 'USER_BLOCKED');
    await Promise.all([ca.none(dmEvent, 300), cb.none(dmEvent, 10)]);
    expect(await count(s, 'message_reactions', 'message_id = ANY($1::uuid[])', [[mA, mB]])).toBe(1);
    expect(await count(s, 'private_messages', 'id = ANY($1::uuid[]) AND is_edited', [[mA, mB]])).toBe(0);
    // Both still see the conversation as it was (history is not hidden in a DM), the earlier reaction included.
    const h = await history(ca, b);
    expect(h.messages.map((m: { content: string }) => m.content)).toEqual(['from a', 'from b']);
    expect(h.messages[0].reactions).toEqual([{ reaction: '👍', count: 1, userIds: [b] }]);
    // The block lifted: allowed again.
    await removeBlock(s.app.db, a, b);
    expect((await cb.request({ type: 'add_reaction', messageId: mA, reaction: '🙂' })).type).toBe('reaction_added');
    expect((await cb.request({ type: 'edit_message', messageId: mB, newContent: 'edited' })).type).toBe('message_edited');
    expect((await ca.next('message_edited')).newContent).toBe('edited');
  });

  it('mark_message_read is recorded for the reader; the other participant gets no message_read or message_status (either direction)', async () => {
    const { a, b, ca, cb, mA, mB } = await talked();
    const cb2 = await s.login(b);
    await addBlock(s.app.db, a, b);
    // The blocked user reads the blocker's message.
    const r = await cb.request({ type: 'mark_message_read', messageId: mA });
    expect(r).toMatchObject({ type: 'message_marked_read', messageId: mA });
    expect(await cb2.next('message_marked_read')).toMatchObject({ messageId: mA }); // the reader's own devices are told
    // The blocker reads the blocked user's message.
    expect((await ca.request({ type: 'mark_message_read', messageId: mB })).type).toBe('message_marked_read');
    await Promise.all([
      ca.none((f) => f.type === 'message_read' || f.type === 'message_status', 400),
      cb.none((f) => f.type === 'message_read' || f.type === 'message_status', 10),
      cb2.none((f) => f.type === 'message_read' || f.type === 'message_status', 10),
    ]);
    expect(await count(s, 'private_messages', 'id = ANY($1::uuid[]) AND is_read', [[mA, mB]])).toBe(2);
    expect((await history(cb, a)).messages.every((m: { isRead: boolean }) => m.isRead)).toBe(true);
  });

  it('message_delivered is recorded and acknowledged; the sender across the block gets no message_status', async () => {
    const { a, b, ca, cb } = await talked();
    const fresh = (await sendOk(cb, a, 'not yet delivered')).messageId as string;
    const toB = (await sendOk(ca, b, 'to b')).messageId as string;
    await ca.next('new_private_message');
    await cb.next('new_private_message');
    await addBlock(s.app.db, b, a); // b blocks a this time
    expect(await ca.request({ type: 'message_delivered', messageIds: [fresh] })).toMatchObject({ type: 'message_delivered_ack', messageIds: [fresh] });
    expect(await cb.request({ type: 'message_delivered', messageIds: [toB] })).toMatchObject({ type: 'message_delivered_ack', messageIds: [toB] });
    await Promise.all([cb.none('message_status', 400), ca.none('message_status', 10)]);
    expect(await count(s, 'private_messages', 'id = ANY($1::uuid[]) AND delivered_at IS NOT NULL', [[fresh, toB]])).toBe(2);
  });

  it('deleting one\'s own message stays allowed: for me (only the actor told) and for everyone (the tombstone reaches both)', async () => {
    const { a, b, ca, cb, mA, mB } = await talked();
    await addBlock(s.app.db, a, b);
    expect(await cb.request({ type: 'delete_message', messageId: mA })).toMatchObject({ type: 'message_deleted', deleteForEveryone: false });
    await ca.none('message_deleted', 200);
    expect(await cb.request({ type: 'delete_private_message', messageId: mB })).toMatchObject({ type: 'message_deleted', deleteForEveryone: true });
    expect(await ca.next('message_deleted')).toMatchObject({ messageId: mB, deleteForEveryone: true });
    expect((await history(ca, b)).messages.map((m: { id: string }) => m.id)).toEqual([mA]);
  });

  it('a failing block lookup refuses reactions, edits and receipts (SERVICE_UNAVAILABLE) and changes nothing', async () => {
    const { a, ca, cb, mA, mB } = await talked();
    await s.app.db.query('ALTER TABLE blocked_relationships RENAME TO br_x');
    try {
      await expectError(cb, { type: 'add_reaction', messageId: mA, reaction: '👍' }, 'SERVICE_UNAVAILABLE');
      await expectError(cb, { type: 'edit_message', messageId: mB, newContent: 'during outage' }, 'SERVICE_UNAVAILABLE');
      await expectError(cb, { type: 'mark_message_read', messageId: mA }, 'SERVICE_UNAVAILABLE');
      await expectError(cb, { type: 'message_delivered', messageIds: [mA] }, 'SERVICE_UNAVAILABLE');
    } finally {
      await s.app.db.query('ALTER TABLE br_x RENAME TO blocked_relationships');
    }
    await ca.none(dmEvent, 300);
    expect(await count(s, 'message_reactions', 'message_id = $1', [mA])).toBe(0);
    expect(await count(s, 'private_messages', 'id = ANY($1::uuid[]) AND (is_edited OR is_read OR delivered_at IS NOT NULL)', [[mA, mB]])).toBe(0);
    expect((await history(cb, a)).messages[1].content).toBe('from b');
  });
});
