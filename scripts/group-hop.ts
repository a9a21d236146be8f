/**
 * Group fan-out across two instances over Redis (DESIGN "Cross-process delivery": group
 * events expanded to member users, or sent once per topic: "measure both"). One group
 * message goes from instance A to a group of G members, half held by A and half by B;
 * measured: the time until B has every delivery for its members, and the CPU per group
 * message of this process (both instances) and of Redis. The member ids are made up and
 * only Redis is involved (no server, no database).
 *
 *   npx tsx scripts/group-hop.ts                        # G = 10, 100, 1000; 3 runs × 300 messages
 *   RUNS=5 N=500 SIZES=50,500 REDIS_URL=redis://127.0.0.1:6379 npx tsx scripts/group-hop.ts
 *
 * Layouts, both through RedisBus (src/fanout/redisBus.ts):
 * - `per-user`: one PUBLISH per member to `u:<id>` (batched per event-loop turn into
 *   scripts of ≤ 128); each instance subscribes to the channels of the users it holds, so
 *   A also gets (and drops) the echoes for its own members. This was the only layout
 *   until 2026-12-05; it is what RedisBus still does for one or two recipients.
 * - `per-instance` (shipped for ROUTE_MIN_USERS recipients or more): the publish script
 *   reads where each member is connected (presence's `pu:<user>` hashes, written here as
 *   admission would) and PUBLISHes the event once to each other instance holding any,
 *   with the member list in the header; B keeps the members it holds.
 * Closed loop (the next message after B has the last one); ~600-byte frame. Loopback Redis
 * only; keys under a random prefix are deleted at the end. `SEAL=1` seals the frames as a
 * server does by default (BUS_ENCRYPTION, src/fanout/wire.ts); `SEAL=0` (default) sends
 * them in plaintext, for comparison.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BodyCipher } from '../src/crypto/cipher.ts';
import { BusSeal } from '../src/crypto/busSeal.ts';
import { RedisBus } from '../src/fanout/redisBus.ts';
import { closeRedis, createRedis, waitReady, type Redis } from '../src/fanout/redisClient.ts';
import { createLogger } from '../src/observability/logger.ts';

const RUNS = Math.min(20, Math.max(1, Number(process.env.RUNS ?? 3)));
const N = Math.min(10_000, Math.max(50, Number(process.env.N ?? 300)));
const WARMUP = 30;
const SIZES = (process.env.SIZES ?? '10,100,1000').split(',').map(Number).filter((g) => g >= 2 && g <= 5000);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** The message-body keys both instances share when sealing; each instance seals with its own BusSeal. */
const BODY_KEYS = process.env.SEAL === '1' ? new BodyCipher([['k1', randomBytes(32)]]) : undefined;
const logger = createLogger('error');
const FRAME = JSON.stringify({
  type: 'new_group_message',
  message: { id: '0190e5c2-7d3a-7b9e-9c1e-5f2d8a4b6c10', groupId: 'group_5b7f', senderId: '1', username: 'alice', content: 'x'.repeat(300), timestamp: new Date().toISOString(), mentions: [], isAnnouncement: false, seq: 42, reactions: [] },
  timestamp: new Date().toISOString(),
});

/** One run: completion latency percentiles (ms) and CPU per group message (ms). */
interface Result {
  p50: number;
  p99: number;
  cpuMs: number;
  redisCpuMs: number;
}

/** Redis's own CPU time so far (INFO cpu: used_cpu_user + used_cpu_sys), ms. */
async function redisCpuMs(c: Redis): Promise<number> {
  const info = await c.info('cpu');
  const get = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return (get('used_cpu_user') + get('used_cpu_sys')) * 1000;
}

/**
 * Send WARMUP + N group messages one after the other; `publish` sends one, `arrived` is
 * resolved by the receiving side once B holds all of its deliveries.
 */
async function closedLoop(admin: Redis, publish: () => void, arrived: { wait: () => Promise<void> }): Promise<Result> {
  const lat: number[] = [];
  let cpu0 = process.cpuUsage();
  let r0 = 0;
  for (let i = 0; i < WARMUP + N; i++) {
    if (i === WARMUP) {
      cpu0 = process.cpuUsage();
      r0 = await redisCpuMs(admin);
    }
    const t0 = performance.now();
    const done = arrived.wait();
    publish();
    await done;
    if (i >= WARMUP) lat.push(performance.now() - t0);
  }
  const cpu = process.cpuUsage(cpu0);
  const redis = (await redisCpuMs(admin)) - r0;
  lat.sort((a, b) => a - b);
  const at = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!;
  return { p50: at(0.5), p99: at(0.99), cpuMs: (cpu.user + cpu.system) / 1000 / N, redisCpuMs: redis / N };
}

/** Resolves once `need` deliveries were counted since the last wait(). */
function counter(need: number): { wait: () => Promise<void>; add: (n: number) => void } {
  let got = 0;
  let resolve: (() => void) | undefined;
  return {
    wait: () => new Promise<void>((r) => ((got = 0), (resolve = r))),
    add: (n) => {
      got += n;
      if (got >= need && resolve) {
        const r = resolve;
        resolve = undefined;
        r();
      }
    },
  };
}

const members = (g: number) => Array.from({ length: g }, (_, i) => String(1000 + i));

/**
 * Two RedisBus instances, A holding the first half of the members and B the second (with
 * their presence hashes); `split` publishes one delivery per member (the per-user layout),
 * else one delivery to all (routed per instance).
 */
async function layout(prefix: string, g: number, split: boolean): Promise<Result> {
  const conns = [0, 1, 2, 3, 4].map((i) => createRedis(REDIS_URL, `grp${i}`, logger));
  await Promise.all(conns.map((c) => waitReady(c, 3000)));
  const admin = conns[4]!;
  const a = new RedisBus(conns[0]!, conns[1]!, { prefix, instanceId: 'A', logger, seal: BODY_KEYS && new BusSeal(BODY_KEYS) });
  const b = new RedisBus(conns[2]!, conns[3]!, { prefix, instanceId: 'B', logger, seal: BODY_KEYS && new BusSeal(BODY_KEYS) });
  const users = members(g);
  const local = users.slice(0, g / 2);
  const remote = users.slice(g / 2);
  for (const [bus, id, held] of [[a, 'A', local], [b, 'B', remote]] as const) {
    for (const u of held) await admin.hIncrBy(`${prefix}pu:${u}`, id, 1);
    await Promise.all(held.map((u) => bus.track(u, true)));
  }
  const got = counter(remote.length);
  await a.start(() => {});
  await b.start((d) => got.add(d.userIds.length));
  const publish = split ? () => users.forEach((u) => a.publish({ userIds: [u], frame: FRAME })) : () => a.publish({ userIds: users, frame: FRAME });
  const r = await closedLoop(admin, publish, got);
  await a.stop();
  await b.stop();
  conns.forEach(closeRedis);
  return r;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => `${x.toFixed(2).padStart(6)} ms`;

function report(name: string, runs: Result[]): void {
  const m = (k: keyof Result) => median(runs.map((r) => r[k]));
  const per = runs.map((r) => `${r.p50.toFixed(2)}/${r.p99.toFixed(2)}`).join(', ');
  process.stdout.write(
    `${name.padEnd(24)} done p50 ${ms(m('p50'))} p99 ${ms(m('p99'))}  CPU/msg: node ${ms(m('cpuMs'))} redis ${ms(m('redisCpuMs'))}   [p50/p99 per run: ${per}]\n`,
  );
}

async function cleanup(prefix: string): Promise<void> {
  const c = createRedis(REDIS_URL, 'grp-cleanup', logger);
  if (await waitReady(c, 2000)) {
    const keys: string[] = [];
    for await (const batch of c.scanIterator({ MATCH: `${prefix}*`, COUNT: 500 })) keys.push(...batch);
    for (let i = 0; i < keys.length; i += 500) await c.del(keys.slice(i, i + 500));
  }
  closeRedis(c);
}

const prefix = `grp:${randomBytes(4).toString('hex')}:`;
process.stdout.write(`group fan-out over Redis, 2 instances (half the members each): ${RUNS} runs × ${N} messages (+${WARMUP} warm-up), frame ${FRAME.length} B, ${BODY_KEYS ? 'sealed' : 'plaintext'}\n`);
for (const g of SIZES) {
  const u: Result[] = [];
  const i: Result[] = [];
  for (let run = 0; run < RUNS; run++) {
    u.push(await layout(`${prefix}${g}u${run}:`, g, true));
    i.push(await layout(`${prefix}${g}i${run}:`, g, false));
  }
  report(`G=${g} per-user`, u);
  report(`G=${g} per-instance`, i);
}
await cleanup(prefix);
process.exit(0);
