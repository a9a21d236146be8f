/**
 * PROTOCOL §7 / §2.1 group fan-out: one message to a 51-member group (sender + 50
 * members, some with two devices) reaches every online member device exactly once, the
 * sender's other device gets the ack once, the sending connection only its reply. Also
 * measures send → last member device receives (median of 5 runs; printed, not asserted).
 */
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestClient } from '../helpers/client.ts';
import { PRESENCE, freshUsers, ok } from '../helpers/groupkit.ts';
import { sleep, startServer, type TestServer } from '../helpers/server.ts';

const MEMBERS = 50; // besides the sender
const TWO_DEVICES = 12; // members with a second device
const RUNS = 5;

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ FOLLOW_POLICY: 'none', CONNECTION_RATE_PER_IP: '10000', MAX_CONNECTIONS_PER_IP: '10000' });
});
afterAll(() => s?.close());

describe('fan-out to a 50-member group', () => {
  it('every online member device gets each message exactly once; timing printed', async () => {
    const [senderId, ...memberIds] = await freshUsers(s, MEMBERS + 1);
    const sender = await s.login(senderId!);
    const senderOther = await s.login(senderId!);
    const devices: { userId: string; c: TestClient }[] = [];
    for (let i = 0; i < memberIds.length; i += 10) {
      const batch = memberIds.slice(i, i + 10);
      const cs = await Promise.all(batch.map((id) => s.login(id)));
      batch.forEach((id, j) => devices.push({ userId: id, c: cs[j]! }));
    }
    const second = await Promise.all(memberIds.slice(0, TWO_DEVICES).map((id) => s.login(id)));
    memberIds.slice(0, TWO_DEVICES).forEach((id, j) => devices.push({ userId: id, c: second[j]! }));
    expect(devices).toHaveLength(MEMBERS + TWO_DEVICES);

    const created = await ok(sender, { type: 'create_group', groupName: 'fifty', maxMembers: MEMBERS + 1, initialMembers: memberIds }, 'group_created');
    expect(created.rejectedMembers).toEqual([]);
    expect(created.group.memberCount).toBe(MEMBERS + 1);
    const groupId = created.groupId as string;
    await Promise.all(devices.map((d) => d.c.next((f) => f.type === 'group_created' && f.groupId === groupId, 10000)));
    await senderOther.next('group_created');

    // Receipt time of each frame carrying a message id, per connection (taken on the socket's own event).
    const arrivals = new Map<TestClient, Map<string, number>>();
    for (const c of [...devices.map((d) => d.c), senderOther]) {
      const m = new Map<string, number>();
      arrivals.set(c, m);
      c.ws.on('message', (data) => {
        const f = JSON.parse(data.toString());
        const id = f.message?.id;
        if (typeof id === 'string' && !m.has(id)) m.set(id, performance.now());
      });
    }

    const times: number[] = [];
    const ids: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      for (const c of [...devices.map((d) => d.c), sender, senderOther]) c.clear();
      const t0 = performance.now();
      const ack = await sender.request({ type: 'send_group_message', groupId, content: `run ${run}` });
      expect(ack.type, JSON.stringify(ack)).toBe('group_message_sent');
      const id = ack.message.id as string;
      ids.push(id);
      await Promise.all(devices.map((d) => d.c.next((f) => f.type === 'new_group_message' && f.message.id === id, 10000)));
      const last = Math.max(...devices.map((d) => arrivals.get(d.c)!.get(id)!));
      times.push(last - t0);
      // Exactly once per device; nothing else about it anywhere.
      await sleep(150);
      for (const d of devices) {
        expect(d.c.frames.filter((f) => !PRESENCE.has(f.type)), `device of ${d.userId}`).toEqual([]);
      }
      expect((await senderOther.next('group_message_sent')).message.id).toBe(id);
      expect(senderOther.frames.filter((f) => !PRESENCE.has(f.type))).toEqual([]);
      expect(sender.frames.filter((f) => !PRESENCE.has(f.type))).toEqual([]);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log(
      `[groups-fanout] send → last of ${devices.length} member devices (${MEMBERS} members, ${TWO_DEVICES} with 2 devices), ${onWhat()}: ` +
        `median ${median.toFixed(1)} ms over ${RUNS} runs; raw ${times.map((t) => t.toFixed(1)).join(', ')} ms`,
    );
    // The history holds each message once.
    const h = await ok(sender, { type: 'get_group_messages', groupId, limit: 100 }, 'group_messages');
    expect(h.messages.map((m: { id: string }) => m.id)).toEqual(ids);
  }, 120_000);
});

function onWhat(): string {
  return process.env.TEST_DATABASE_URL ? 'PostgreSQL' : 'PGlite';
}
