/**
 * PROTOCOL §5 in groups, for commands that name a message by id: a member in a block
 * with the sender cannot react to, reply to, read or edit-delete-notice that message
 * (NOT_FOUND, as if it did not exist), and is not told when it is deleted for everyone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ FOLLOW_POLICY: 'none' });
  await s.users('1', '2', '3');
  await addBlock(s.app.db, '3', '2'); // carol (3) blocks bob (2)
});
afterAll(() => s?.close());

describe('group messages across a block, by id', () => {
  it('are NOT_FOUND for the blocked member and their deletion is not announced to them', async () => {
    const owner = await s.login('1');
    const bob = await s.login('2');
    const carol = await s.login('3');
    const g = await owner.request({ type: 'create_group', groupName: 'B', initialMembers: ['2', '3'] });
    expect(g.rejectedMembers).toEqual([]);
    const m = await bob.request({ type: 'send_group_message', groupId: g.groupId, content: 'from bob' });
    const id = m.message.id;
    for (const frame of [
      { type: 'add_group_reaction', messageId: id, reaction: '👍' },
      { type: 'add_reaction', messageId: id, reaction: '👍' },
      { type: 'mark_message_read', messageId: id },
      { type: 'send_group_message', groupId: g.groupId, content: 'reply', replyTo: id },
      { type: 'delete_group_message', messageId: id, deleteForEveryone: false },
    ]) {
      const r = await carol.request(frame);
      expect(r, frame.type).toMatchObject({ type: 'error', code: 'NOT_FOUND' });
    }
    // the owner (no block) can react
    expect((await owner.request({ type: 'add_group_reaction', messageId: id, reaction: '👍' })).type).toBe('group_reaction_added');
    await owner.request({ type: 'delete_group_message', messageId: id, deleteForEveryone: true });
    expect((await bob.next('group_message_deleted')).messageId).toBe(id);
    await carol.none((f) => f.type === 'group_message_deleted', 300);
  });
});
