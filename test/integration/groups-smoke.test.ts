import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer();
  await s.users('1', '2', '3');
  await s.follow(['1', '2'], ['1', '3']);
});
afterAll(() => s?.close());

describe('groups smoke', () => {
  it('create, send with mention, leave with member_left after left_group', async () => {
    const a = await s.login('1');
    const b = await s.login('2');
    const c = await s.login('3');
    const created = await a.request({ type: 'create_group', groupName: 'G', initialMembers: [2, '3', 99] });
    expect(created.type).toBe('group_created');
    expect(created.rejectedMembers).toEqual([{ userId: '99', code: 'NOT_FOUND' }]);
    expect(created.group.memberCount).toBe(3);
    await b.next('group_created');
    const sent = await a.request({ type: 'send_group_message', groupId: created.groupId, content: 'hi @U2 and bob@example.com' });
    expect(sent.type).toBe('group_message_sent');
    expect(sent.message.mentions).toEqual([{ type: 'user', userId: '2', username: 'u2' }]);
    expect((await b.next('new_group_message')).message.content).toContain('hi');
    expect((await b.next('mentioned_in_group')).messageId).toBe(sent.message.id);
    expect((await c.next('new_group_message')).message.id).toBe(sent.message.id);
    await c.none('mentioned_in_group', 200);
    const rid = 'leave1';
    c.send({ type: 'leave_group', groupId: created.groupId, requestId: rid });
    const first = await c.next((f) => f.type === 'left_group' || f.type === 'member_left');
    expect(first.type).toBe('left_group');
    expect((await c.next('member_left')).userId).toBe('3');
    expect((await b.next('member_left')).userId).toBe('3');
    const hist = await b.request({ type: 'get_group_messages', groupId: created.groupId });
    expect(hist.messages.map((m: any) => m.id)).toEqual([sent.message.id]);
    const groups = await b.request({ type: 'get_user_groups' });
    expect(groups.groups[0].memberCount).toBe(2);
    expect(groups.groups[0].unreadCount).toBe(1);
    // sync returns changes below the snapshot xmin (§9), which another database's open
    // transaction on a shared PostgreSQL server can hold back for a moment: poll, bounded.
    let sync: any;
    for (let i = 0; i < 100; i++) {
      sync = await b.request({ type: 'sync' });
      if (sync.changes.some((ch: any) => ch.type === 'member_left' && ch.userId === '3')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(sync.messages.some((m: any) => m.id === sent.message.id)).toBe(true);
    expect(sync.changes.some((ch: any) => ch.type === 'member_left' && ch.userId === '3')).toBe(true);
  });
});
