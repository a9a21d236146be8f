/**
 * A stand-in chat server for checking the benchmark harness itself (not the product):
 * speaks just enough of the protocol (connected, authenticate → auth_success from the
 * token's `sub` without verifying it, send_private_message → ack + delivery to every
 * recipient connection, create_group / send_group_message likewise, UNKNOWN_TYPE for the
 * rest; MOCK_NO_GROUPS=1 turns groups off) and serves /ready and /health.
 * No database. Run the harness against it with
 * `BENCH_SERVER_ENTRY=scripts/bench/mock-server.ts npm run bench -- ...`.
 * Listens on HOST (127.0.0.1) : PORT.
 */
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';

const port = Number(process.env.PORT ?? 0);
const host = process.env.HOST ?? '127.0.0.1';
const byUser = new Map<string, Set<WebSocket>>();
const groups = new Map<string, string[]>();
const noGroups = process.env.MOCK_NO_GROUPS === '1';

const http = createServer((req, res) => {
  if (req.url === '/ready') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: true }));
  } else if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'healthy', memory: { rss: process.memoryUsage.rss() } }));
  } else res.writeHead(404).end();
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
http.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws)));

wss.on('connection', (ws: WebSocket) => {
  let userId: string | undefined;
  ws.send(JSON.stringify({ type: 'connected', clientId: randomUUID(), requiresAuth: true, message: 'Please authenticate', timestamp: new Date().toISOString() }));
  ws.on('message', (data) => {
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(data.toString()) as Record<string, unknown>;
    } catch {
      return;
    }
    const requestId = f.requestId;
    if (f.type === 'authenticate') {
      const payload = JSON.parse(Buffer.from(String(f.token).split('.')[1] ?? '', 'base64url').toString() || '{}') as { sub?: string };
      userId = String(payload.sub);
      let set = byUser.get(userId);
      if (!set) byUser.set(userId, (set = new Set()));
      set.add(ws);
      ws.send(JSON.stringify({ type: 'auth_success', userId, requestId }));
    } else if (f.type === 'send_private_message' && userId) {
      const recipientId = String(f.recipientId);
      const m = { id: randomUUID(), senderId: userId, recipientId, content: f.content, clientMessageId: f.clientMessageId, timestamp: new Date().toISOString() };
      setImmediate(() => {
        ws.send(JSON.stringify({ type: 'private_message_sent', message: m, messageId: m.id, clientMessageId: f.clientMessageId, requestId }));
        const out = JSON.stringify({ type: 'new_private_message', message: m, timestamp: m.timestamp });
        for (const r of byUser.get(recipientId) ?? []) r.send(out);
      });
    } else if (f.type === 'create_group' && userId && !noGroups) {
      const groupId = `group_${randomUUID()}`;
      const members = [userId, ...((f.initialMembers as unknown[]) ?? []).map(String)];
      groups.set(groupId, members);
      ws.send(JSON.stringify({ type: 'group_created', groupId, members: members.map((m) => ({ userId: m })), rejectedMembers: [], requestId }));
    } else if (f.type === 'send_group_message' && userId && !noGroups) {
      const groupId = String(f.groupId);
      const m = { id: randomUUID(), groupId, senderId: userId, content: f.content, clientMessageId: f.clientMessageId, timestamp: new Date().toISOString() };
      ws.send(JSON.stringify({ type: 'group_message_sent', message: m, requestId }));
      const out = JSON.stringify({ type: 'new_group_message', message: m, timestamp: m.timestamp });
      for (const member of groups.get(groupId) ?? []) for (const r of byUser.get(member) ?? []) if (r !== ws) r.send(out);
    } else {
      ws.send(JSON.stringify({ type: 'error', code: 'UNKNOWN_TYPE', message: 'unknown type', requestId }));
    }
  });
  ws.on('close', () => {
    if (userId) byUser.get(userId)?.delete(ws);
  });
});

http.listen(port, host);
process.on('SIGTERM', () => {
  for (const c of wss.clients) c.close(1001);
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
