/**
 * Load-generator process (forked by run.ts with an IPC channel). Holds real `ws` clients
 * and answers the driver's requests (see ./ipc.ts). Exits when the driver disconnects.
 * Traffic goes to 127.0.0.1 only.
 */
import { jwtKey } from '../../src/auth/keys.ts';
import { ClientPool } from './lg-clients.ts';
import { TrafficPhase } from './lg-traffic.ts';
import type { GroupCreateResult, LgReply, LgRequest } from './ipc.ts';

let pool: ClientPool | undefined;
let phase: TrafficPhase | undefined;

function reply(r: LgReply): void {
  process.send?.(r);
}

function needPool(): ClientPool {
  if (!pool) throw new Error('init first');
  return pool;
}

/** Create a group of `memberIds` (falls back to add_group_member when the list is refused). */
async function createGroup(req: Extract<LgRequest, { op: 'group-create' }>): Promise<GroupCreateResult> {
  const p = needPool();
  const base = { type: 'create_group', groupName: `bench ${Date.now()}`, groupDescription: 'benchmark', maxMembers: req.maxMembers };
  let r = await p.request(req.creatorKey, { ...base, initialMembers: req.memberIds }, req.timeoutMs);
  if (r.type === 'error' && r.code === 'UNKNOWN_TYPE') return { unavailable: 'create_group: UNKNOWN_TYPE' };
  let added = 0;
  if (r.type === 'error' && r.code === 'BAD_REQUEST') {
    // The server may cap initialMembers: create empty, then add one by one (bounded concurrency).
    r = await p.request(req.creatorKey, { ...base, initialMembers: [] }, req.timeoutMs);
    if (r.type !== 'group_created') return { error: `create_group: ${JSON.stringify(r).slice(0, 300)}` };
    const groupId = String(r.groupId);
    let next = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (next < req.memberIds.length) {
        const userId = req.memberIds[next++]!;
        const a = await p.request(req.creatorKey, { type: 'add_group_member', groupId, userId }, req.timeoutMs);
        if (a.type === 'member_added') added++;
        else failures.push(String(a.code ?? a.type));
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    if (failures.length && failures[0] === 'UNKNOWN_TYPE') return { unavailable: 'add_group_member: UNKNOWN_TYPE' };
    return { groupId, memberCount: 1 + added, rejected: failures.length };
  }
  if (r.type !== 'group_created') return { error: `create_group: ${JSON.stringify(r).slice(0, 300)}` };
  const members = Array.isArray(r.members) ? r.members.length : undefined;
  const rejected = Array.isArray(r.rejectedMembers) ? r.rejectedMembers.length : 0;
  return { groupId: String(r.groupId), memberCount: members ?? 1 + req.memberIds.length - rejected, rejected };
}

async function handle(req: LgRequest): Promise<unknown> {
  switch (req.op) {
    case 'init':
      pool = new ClientPool(req.url, jwtKey(req.jwtSecret, 'base64'), req.handshake);
      return null;
    case 'connect':
      // Tokens are signed before the start time, so signing is not part of the measured span.
      return needPool().connect(req.clients, req.concurrency, req.timeoutMs, req.startAt);
    case 'disconnect':
      await needPool().closeAll();
      return null;
    case 'group-create':
      return createGroup(req);
    case 'traffic': {
      phase = new TrafficPhase(needPool(), req.plan);
      // Answer at once; sending runs in the background until its schedule ends.
      phase.run().catch((err) => process.stderr.write(`loadgen ${process.pid}: ${(err as Error).message}\n`));
      return null;
    }
    case 'progress':
      if (!phase) throw new Error('no traffic phase');
      return phase.progress();
    case 'collect': {
      if (!phase) throw new Error('no traffic phase');
      const r = phase.collect();
      phase = undefined;
      return r;
    }
    case 'status':
      return needPool().status();
    case 'close':
      await pool?.closeAll();
      pool = undefined;
      setTimeout(() => process.exit(0), 50);
      return null;
  }
}

process.on('message', (msg) => {
  const req = msg as LgRequest;
  handle(req).then(
    (result) => reply({ id: req.id, ok: true, result }),
    (err: unknown) => reply({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
