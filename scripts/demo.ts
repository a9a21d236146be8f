/**
 * `npm run demo`: the main job on real input. Connects alice (two devices) and bob (and
 * carol for the group scene) to a RUNNING server (DEMO_URL or ws://127.0.0.1:$PORT,
 * default 3001) and plays a short conversation, printing every frame each connection
 * receives: send, reply, edit, react, read, delete; then a group: create (with a refused
 * member), mention, pin, announcement. Uses the demo users of the embedded database (alice 1, bob 2, carol 3).
 */
import WebSocket from 'ws';
import { devSigner, serverUrl } from './dev-token.ts';

type Frame = Record<string, any> & { type: string };
const url = serverUrl();
const sign = devSigner();
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
let rid = 0;

function short(f: Frame): string {
  const text = JSON.stringify(f.token ? { ...f, token: '<jwt>' } : f);
  return text.length > 220 ? text.slice(0, 217) + '...' : text;
}

/** A named connection that prints what it receives and can await replies. */
async function connect(name: string, userId: string): Promise<{ request(frame: object): Promise<Frame>; close(): void }> {
  const ws = new WebSocket(url);
  const pending = new Map<string, (f: Frame) => void>();
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as Frame;
    process.stdout.write(`  ${name.padEnd(14)} <- ${short(f)}\n`);
    if (f.requestId && pending.has(f.requestId)) {
      pending.get(f.requestId)!(f);
      pending.delete(f.requestId);
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (err) => reject(new Error(`cannot connect to ${url}: ${err.message} (is \`npm start\` running?)`)));
  });
  const request = (frame: object) =>
    new Promise<Frame>((resolve, reject) => {
      const requestId = `demo-${++rid}`;
      pending.set(requestId, resolve);
      process.stdout.write(`  ${name.padEnd(14)} -> ${short({ ...(frame as Frame), requestId })}\n`);
      ws.send(JSON.stringify({ ...frame, requestId }));
      setTimeout(() => reject(new Error(`no reply to ${JSON.stringify(frame)}`)), 5000).unref();
    });
  const auth = await request({ type: 'authenticate', token: sign(userId) });
  if (auth.type !== 'auth_success') throw new Error(`${name}: ${auth.message}`);
  return { request, close: () => ws.close(1000) };
}

function step(title: string): void {
  process.stdout.write(`\n== ${title}\n`);
}

step(`connecting to ${url}`);
const alicePhone = await connect('alice(phone)', '1');
const aliceLaptop = await connect('alice(laptop)', '1');
const bob = await connect('bob', '2');
const carol = await connect('carol', '3');

step('alice sends bob a message (bob and alice\'s laptop receive it)');
const sent = await alicePhone.request({ type: 'send_private_message', recipientId: '2', content: 'Hi Bob! Lunch today?', clientMessageId: `demo-${Date.now()}` });
await wait(150);
step('bob replies to it');
const reply = await bob.request({ type: 'send_private_message', recipientId: 1, content: 'Sure, 12:30?', replyTo: sent.messageId });
await wait(150);
step('alice edits her message');
await alicePhone.request({ type: 'edit_message', messageId: sent.messageId, newContent: 'Hi Bob! Lunch today at the usual place?' });
await wait(150);
step('alice reacts to bob\'s reply, from her laptop');
await aliceLaptop.request({ type: 'add_reaction', messageId: reply.messageId, reaction: '👍' });
await wait(150);
step('alice reads bob\'s reply (bob gets the read receipt)');
await alicePhone.request({ type: 'mark_message_read', messageId: reply.messageId });
await wait(150);
step('bob deletes his reply for everyone');
await bob.request({ type: 'delete_message', messageId: reply.messageId, deleteForEveryone: true });
await wait(150);
step('history as alice sees it');
await alicePhone.request({ type: 'get_private_messages', recipientId: '2', limit: 10 });

step('group: alice creates "Lunch club" with bob and carol (carol is refused: alice does not follow her, PROTOCOL §5)');
const group = await alicePhone.request({ type: 'create_group', groupName: 'Lunch club', groupDescription: 'Where we eat', initialMembers: ['2', '3'] });
process.stdout.write(`  rejectedMembers: ${JSON.stringify(group.rejectedMembers)}\n`);
await wait(150);
step('bob mentions alice');
const mention = await bob.request({ type: 'send_group_message', groupId: group.groupId, content: '@Alice are you in?' });
await wait(150);
step('alice pins it and sends an announcement');
await alicePhone.request({ type: 'pin_message', groupId: group.groupId, messageId: mention.message.id });
await alicePhone.request({ type: 'send_announcement', groupId: group.groupId, content: 'Friday lunch is on me!' });
await wait(150);
await bob.request({ type: 'get_pinned_messages', groupId: group.groupId });
await wait(150);

for (const c of [alicePhone, aliceLaptop, bob, carol]) c.close();
step('done');
process.exit(0);
