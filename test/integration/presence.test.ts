/**
 * PROTOCOL §8 on one process: contacts are followers/followees and members of shared
 * groups, minus blocks; user_online / user_offline go to online contacts only;
 * get_online_users and get_presence show contacts only (others omitted), with lastSeen.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addBlock } from '../../src/store/devData.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ OFFLINE_GRACE_MS: '200' });
  await s.users('1', '2', '3', '4', '5');
  // 2 follows 1; 1 and 3 share a group (created below); 4 follows 1 but is blocked by 1; 5 is a stranger
  await s.follow(['2', '1'], ['1', '3'], ['4', '1']);
  await addBlock(s.app.db, '1', '4');
});
afterAll(() => s?.close());

describe('presence', () => {
  it('user_online / user_offline reach online contacts only, never across a block', async () => {
    const three = await s.login('3');
    const one = await s.login('1');
    await one.request({ type: 'create_group', groupName: 'P', initialMembers: ['3'] });
    await one.close();
    await new Promise((r) => setTimeout(r, 500)); // past OFFLINE_GRACE_MS: a reconnect within it is silent
    const two = await s.login('2');
    const four = await s.login('4');
    const five = await s.login('5');
    const a = await s.login('1');
    for (const c of [two, three]) expect((await c.next((f) => f.type === 'user_online' && f.user.id === '1')).user.username).toBe('u1');
    await four.none((f) => f.type === 'user_online' && f.user.id === '1', 300);
    await five.none((f) => f.type === 'user_online' && f.user.id === '1', 100);

    const online = await a.request({ type: 'get_online_users' });
    expect(online.users.map((u: any) => u.id).sort()).toEqual(['2', '3']);
    const presence = await a.request({ type: 'get_presence', userIds: ['2', '3', '4', 5, '1'] });
    expect(presence.users.map((u: any) => u.id).sort()).toEqual(['2', '3']);
    expect(presence.users.every((u: any) => u.online === true)).toBe(true);

    await a.close();
    const off = await two.next((f) => f.type === 'user_offline' && f.user.id === '1', 5000);
    expect(typeof off.lastSeen).toBe('string');
    await four.none((f) => f.type === 'user_offline' && f.user.id === '1', 300);
    const b = await s.login('3');
    const after = await b.request({ type: 'get_presence', userIds: ['1'] });
    expect(after.users).toEqual([{ id: '1', online: false, lastSeen: expect.any(String) }]);
  });
});
