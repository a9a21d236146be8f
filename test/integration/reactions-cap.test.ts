/**
 * Reactions per message (audit 6, F9; docs/PROTOCOL-NOTES.md "Reactions per message"): a
 * user holds at most MAX_REACTIONS_PER_USER distinct reactions on one message, and a message
 * carries at most MAX_DISTINCT_REACTIONS distinct values. Past either cap `add_reaction` /
 * `add_group_reaction` → GROUP_FULL (`field: "reaction"`), nothing stored and nobody told;
 * concurrent adds from several devices never pass the cap. Before the caps, one account's
 * 5,000 reactions made every page holding that message 297 KB.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Frame } from '../helpers/client.ts';
import { count, expectError, history, mutualPair, sendOk } from '../helpers/dmkit.ts';
import { makeGroup, ok, say } from '../helpers/groupkit.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

// Spelled out: the code before the caps has no such exports.
const PER_USER = 20; // MAX_REACTIONS_PER_USER (src/store/reactions.ts)
const DISTINCT = 50; // MAX_DISTINCT_REACTIONS

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ ACTION_RATE_LIMIT: '100000', PROTOCOL_ERROR_LIMIT: '100000' });
});
afterAll(() => s?.close());

const emoji = (i: number): string => `r${i}`;
const mine = (s: TestServer, messageId: string, userId: string): Promise<number> =>
  count(s, 'message_reactions', 'message_id = $1 AND user_id = $2', [messageId, userId]);

describe('reactions per user per message', () => {
  it('a DM: the 21st distinct reaction of one user → GROUP_FULL, nothing stored or sent; removing one makes room; the other participant has a budget of their own', async () => {
    const { a, b, ca, cb } = await mutualPair(s);
    const ack = await sendOk(ca, b, 'react to me');
    const messageId = (ack.message as Frame).id as string;
    for (let i = 0; i < PER_USER; i++) {
      expect((await ca.request({ type: 'add_reaction', messageId, reaction: emoji(i) })).type).toBe('reaction_added');
    }
    await cb.next((f) => f.type === 'reaction_added' && f.emoji === emoji(PER_USER - 1));
    cb.clear();
    const err = await expectError(ca, { type: 'add_reaction', messageId, reaction: emoji(PER_USER) }, 'GROUP_FULL', 'reaction');
    expect(err.message).toContain(String(PER_USER));
    expect(await mine(s, messageId, a)).toBe(PER_USER);
    await cb.none('reaction_added', 200);
    // Adding one already held is still REACTION_EXISTS, not the cap.
    await expectError(ca, { type: 'add_reaction', messageId, reaction: emoji(3) }, 'REACTION_EXISTS', 'reaction');
    // The other participant reacts on their own budget, with a value of a's too.
    for (let i = 0; i < PER_USER; i++) {
      expect((await cb.request({ type: 'add_reaction', messageId, emoji: emoji(i + 5) })).type).toBe('reaction_added');
    }
    await expectError(cb, { type: 'add_reaction', messageId, emoji: 'one more' }, 'GROUP_FULL', 'reaction');
    // Remove one → room for one.
    expect((await ca.request({ type: 'remove_reaction', messageId, reaction: emoji(0) })).type).toBe('reaction_removed');
    expect((await ca.request({ type: 'add_reaction', messageId, reaction: emoji(PER_USER) })).type).toBe('reaction_added');
    await expectError(ca, { type: 'add_reaction', messageId, reaction: emoji(PER_USER + 1) }, 'GROUP_FULL', 'reaction');
    const page = await history(ca, b);
    const totals = (page.messages as Frame[]).find((m) => m.id === messageId)!.reactions as Frame[];
    expect(totals.filter((r) => (r.userIds as string[]).includes(a))).toHaveLength(PER_USER);
    expect(totals.filter((r) => (r.userIds as string[]).includes(b))).toHaveLength(PER_USER);
  });

  it('concurrent adds from three devices of one user store exactly the cap', async () => {
    const { a, b, ca } = await mutualPair(s);
    const devices = [ca, await s.login(a), await s.login(a)];
    const messageId = ((await sendOk(ca, b, 'race')).message as Frame).id as string;
    const replies = await Promise.all(
      Array.from({ length: 3 * PER_USER }, (_, i) => devices[i % 3]!.request({ type: 'add_reaction', messageId, reaction: emoji(i) })),
    );
    const types = replies.map((r) => (r.type === 'error' ? r.code : r.type));
    expect(types.filter((t) => t === 'reaction_added')).toHaveLength(PER_USER);
    expect(types.filter((t) => t === 'GROUP_FULL')).toHaveLength(2 * PER_USER);
    expect(await mine(s, messageId, a)).toBe(PER_USER);
  });
});

describe('distinct reactions per message', () => {
  it('a group message: a 51st distinct value → GROUP_FULL for anyone, nobody told; a value already there is still accepted', async () => {
    const g = await makeGroup(s, { members: 3 });
    const messageId = (await say(g.owner, g.groupId, 'popular')).id as string;
    const [w1, w2, w3, late] = g.all;
    // 20 + 20 + 10 distinct values by three users: the message is at the cap.
    let v = 0;
    for (const [w, n] of [[w1!, PER_USER], [w2!, PER_USER], [w3!, DISTINCT - 2 * PER_USER]] as const) {
      for (let i = 0; i < n; i++) await ok(w.c, { type: 'add_group_reaction', messageId, reaction: emoji(v++) }, 'group_reaction_added');
    }
    const kinds = async (): Promise<number> => {
      const { rows } = await s.app.db.query<{ n: number }>('SELECT count(DISTINCT reaction)::int AS n FROM message_reactions WHERE message_id = $1', [messageId]);
      return Number(rows[0]!.n);
    };
    expect(await kinds()).toBe(DISTINCT);
    // The last reactor's reply was its event; everyone else gets it as an event.
    await Promise.all(g.all.filter((w) => w !== w3).map((w) => w.c.next((f) => f.type === 'group_reaction_added' && f.emoji === emoji(DISTINCT - 1))));
    for (const w of g.all) w.c.clear();
    const err = await expectError(late!.c, { type: 'add_group_reaction', messageId, reaction: 'new value' }, 'GROUP_FULL', 'reaction');
    expect(err.message).toContain(String(DISTINCT));
    // DM-named reactions on a group message take the same path.
    await expectError(w3!.c, { type: 'add_reaction', messageId, reaction: 'other new' }, 'GROUP_FULL', 'reaction');
    await Promise.all(g.all.map((w) => w.c.none('group_reaction_added', 150)));
    expect(await kinds()).toBe(DISTINCT);
    // A value already on the message: accepted (it adds a user, not a value).
    await ok(late!.c, { type: 'add_group_reaction', messageId, reaction: emoji(7) }, 'group_reaction_added');
    expect(await mine(s, messageId, late!.id)).toBe(1);
    // Removing the last holder of a value makes room for a new one.
    await ok(w3!.c, { type: 'remove_group_reaction', messageId, reaction: emoji(DISTINCT - 1) }, 'group_reaction_removed');
    await ok(late!.c, { type: 'add_group_reaction', messageId, reaction: 'new value' }, 'group_reaction_added');
    expect(await kinds()).toBe(DISTINCT);
  });
});
