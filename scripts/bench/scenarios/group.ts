/**
 * Group fan-out workload: `groupSize` users, each online with one connection, in one
 * group; `groupSenders` of them send group messages open-loop at `groupRate` msgs/s.
 * Measures delivered `new_group_message` frames per second inside the window, and the
 * fan-out time (send → last member). Reports "not available" when the server answers
 * `create_group` (or `add_group_member`) with UNKNOWN_TYPE.
 */
import { sleep } from '../../lib/proc.ts';
import { assertAlive, bootServer, freshDatabase, LoadGens, seed, serverEnv, type BenchContext } from '../fixture.ts';
import type { GroupCreateResult, SenderSpec } from '../ipc.ts';
import { nowMs } from '../ipc.ts';
import type { RunResult } from '../stats.ts';
import { connectAll, dealClients, driveTraffic, splitPlans, type TrafficSummary } from './traffic.ts';

/** One group run. */
export interface GroupMeasure {
  unavailable?: string;
  memberCount?: number;
  rejected?: number;
  traffic?: TrafficSummary;
  rssAfter?: number;
}

/** Run the group workload once against a fresh server and database. */
export async function measureGroup(ctx: BenchContext, label: string): Promise<GroupMeasure> {
  const { opts, infra } = ctx;
  const M = opts.groupSize;
  const dbUrl = await freshDatabase(infra, label);
  // The creator (user 1) follows every member, as FOLLOW_POLICY=sender_follows requires.
  await seed(dbUrl, M, Array.from({ length: M - 1 }, (_, i) => ['1', String(i + 2)] as const));
  const server = await bootServer(ctx, serverEnv(infra, dbUrl, opts), label);
  let lg: LoadGens | undefined;
  try {
    lg = await LoadGens.start(opts.loadgens, server.wsUrl, infra.jwtSecret, opts.clientHandshake);
    const N = lg.size;
    const connect = await connectAll(lg, dealClients(N, 'g', 1, M, opts.sourceIps, 1), opts.connectConcurrency, 15_000);
    if (connect.failed) throw new Error(`${connect.failed} of ${M} connections failed: ${JSON.stringify(connect.failures)}`);
    const created = await lg.request<GroupCreateResult>(
      0,
      { op: 'group-create', creatorKey: 'g1', memberIds: Array.from({ length: M - 1 }, (_, i) => String(i + 2)), maxMembers: M, timeoutMs: 60_000 },
      300_000,
    );
    if (created.unavailable) return { unavailable: created.unavailable };
    if (!created.groupId) throw new Error(created.error ?? 'create_group failed');
    const memberCount = created.memberCount ?? M;
    await sleep(1000);
    const S = Math.min(opts.groupSenders, M);
    const senders: SenderSpec[][] = Array.from({ length: N }, () => []);
    for (let u = 1; u <= S; u++) senders[(u - 1) % N]!.push({ key: `g${u}`, target: created.groupId });
    const gen = `grp${Date.now() % 1e6}`;
    const plans = splitPlans({ kind: 'group', gen, startAt: nowMs() + 1000, warmupMs: opts.warmupMs, durationMs: opts.durationMs, contentBytes: opts.contentBytes }, senders, opts.groupRate);
    const traffic = await driveTraffic(lg, plans, memberCount - 1, opts, server);
    assertAlive(server, 'during the run');
    if ((traffic.errorCodes.UNKNOWN_TYPE ?? 0) > 0 && traffic.acked === 0) return { unavailable: 'send_group_message: UNKNOWN_TYPE' };
    return { memberCount, rejected: created.rejected, traffic, rssAfter: server.rssBytes() };
  } finally {
    await lg?.stop();
    await server.stop('SIGTERM', 20_000);
  }
}

/** group-fanout figures: ≥ 80,000 delivered frames/s. */
export function groupFigures(m: GroupMeasure, opts: { groupRate: number }): RunResult {
  const t = m.traffic!;
  const members = m.memberCount ?? 0;
  return {
    figures: [
      { name: 'delivered frames/s', unit: '/s', value: t.framesPerSec, target: { op: '>=', value: 80_000 } },
      { name: 'offered frames/s', unit: '/s', value: opts.groupRate * Math.max(0, members - 1) },
      { name: 'members online', unit: 'conns', value: members },
      { name: 'fan-out complete p50', unit: 'ms', value: t.allDevices.p50 },
      { name: 'fan-out complete p99', unit: 'ms', value: t.allDevices.p99 },
      { name: 'per-member delivery p99', unit: 'ms', value: t.perDevice.p99 },
      { name: 'ack p99', unit: 'ms', value: t.ack.p99 },
      { name: 'incomplete messages', unit: 'msgs', value: t.lost },
      { name: 'server CPU', unit: '% core', value: t.serverCpuPct },
      { name: 'generators CPU', unit: '% core', value: t.generatorCpuPct },
    ],
    info: { memberCount: members, rejected: m.rejected, traffic: t, rssAfter: m.rssAfter },
  };
}
