/**
 * Extra latency of one cross-process hop of the fan-out (DESIGN "Cross-process
 * delivery"), measured as ping-pong between two bus endpoints: one-way hop = round trip / 2.
 *
 *   npx tsx scripts/hop-latency.ts                # all layouts, 3 runs × 2000 round trips
 *   RUNS=5 N=5000 REDIS_URL=redis://127.0.0.1:6379 npx tsx scripts/hop-latency.ts
 *
 * Layouts:
 * - `redis per-user`: RedisBus as shipped (PUBLISH to `u:<id>`, subscriber per instance).
 * - `redis per-instance`: the alternative layout, for comparison: a Lua script looks up
 *   the recipient's instances (`route:<id>` set) and PUBLISHes to `inst:<id>` channels.
 * - `cluster primary`: ClusterBus in two node:cluster workers, relayed by ClusterHub in
 *   the primary (IPC, advanced serialization).
 * Each round trip carries a ~500-byte frame (a typical new_private_message). Reports p50
 * and p99 of the one-way hop per run and the median over runs. Loopback Redis only; keys
 * under a random prefix are deleted at the end; workers exit when done.
 */
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ClusterBus } from '../src/fanout/clusterBus.ts';
import { ClusterHub } from '../src/fanout/clusterPrimary.ts';
import type { Bus, Delivery } from '../src/fanout/bus.ts';
import { RedisBus } from '../src/fanout/redisBus.ts';
import { closeRedis, createRedis, LuaScript, waitReady, type Redis } from '../src/fanout/redisClient.ts';
import { decodeDelivery, encodeDelivery } from '../src/fanout/wire.ts';
import { createLogger } from '../src/observability/logger.ts';

const RUNS = Math.min(20, Math.max(1, Number(process.env.RUNS ?? 3)));
const N = Math.min(100_000, Math.max(100, Number(process.env.N ?? 2000)));
const WARMUP = 200;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const logger = createLogger('error');
const FRAME = JSON.stringify({
  type: 'new_private_message',
  message: { id: '0190e5c2-7d3a-7b9e-9c1e-5f2d8a4b6c10', conversationId: 'conv_1_2', senderId: '1', recipientId: '2', username: 'alice', content: 'x'.repeat(180), timestamp: new Date().toISOString(), isRead: false, seq: 42, reactions: [] },
  timestamp: new Date().toISOString(),
});

/** One run's one-way hop percentiles, ms. */
interface Result {
  p50: number;
  p99: number;
}

function percentiles(rtts: number[]): Result {
  const s = rtts.map((r) => r / 2).sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { p50: at(0.5), p99: at(0.99) };
}

/** Ping-pong `count` round trips: `ping` sends to the far side; `onPong` must resolve the waiter. */
async function pingPong(send: () => void, waitPong: () => Promise<void>): Promise<number[]> {
  const rtts: number[] = [];
  for (let i = 0; i < WARMUP + N; i++) {
    const t0 = performance.now();
    const done = waitPong();
    send();
    await done;
    if (i >= WARMUP) rtts.push(performance.now() - t0);
  }
  return rtts;
}

/** A waiter that the receive side resolves. */
function pongWaiter(): { wait: () => Promise<void>; fire: () => void } {
  let resolve: (() => void) | undefined;
  return {
    wait: () => new Promise<void>((r) => (resolve = r)),
    fire: () => {
      const r = resolve;
      resolve = undefined;
      r?.();
    },
  };
}

/** Two RedisBus endpoints (four connections) in this process. */
async function redisPerUser(prefix: string): Promise<Result> {
  const conns = [0, 1, 2, 3].map((i) => createRedis(REDIS_URL, `hop${i}`, logger));
  await Promise.all(conns.map((c) => waitReady(c, 3000)));
  const a = new RedisBus(conns[0]!, conns[1]!, { prefix, instanceId: 'A', logger });
  const b = new RedisBus(conns[2]!, conns[3]!, { prefix, instanceId: 'B', logger });
  const pong = pongWaiter();
  await a.start((d) => d.userIds.includes('a') && pong.fire());
  await b.start((d) => d.userIds.includes('b') && b.publish({ userIds: ['a'], frame: d.frame }));
  await a.track('a', true);
  await b.track('b', true);
  const rtts = await pingPong(() => a.publish({ userIds: ['b'], frame: FRAME }), pong.wait);
  await a.stop();
  await b.stop();
  conns.forEach(closeRedis);
  return percentiles(rtts);
}

const ROUTE = new LuaScript(`
local sent = {}
for i = 1, #KEYS do
  for _, inst in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    if inst ~= ARGV[1] and not sent[inst] then
      sent[inst] = true
      redis.call('PUBLISH', ARGV[3] .. 'inst:' .. inst, ARGV[2])
    end
  end
end
return 1`);

/** The per-instance layout: route lookup + PUBLISH in one Lua call; one channel per instance. */
async function redisPerInstance(prefix: string): Promise<Result> {
  const [pubA, subA, pubB, subB] = [0, 1, 2, 3].map((i) => createRedis(REDIS_URL, `hopi${i}`, logger)) as [Redis, Redis, Redis, Redis];
  await Promise.all([pubA, subA, pubB, subB].map((c) => waitReady(c, 3000)));
  await pubA.sAdd(`${prefix}route:a`, 'A');
  await pubA.sAdd(`${prefix}route:b`, 'B');
  const publish = (pub: Redis, origin: string, d: Delivery) =>
    void ROUTE.run(pub, d.userIds.map((u) => `${prefix}route:${u}`), [origin, encodeDelivery(origin, d, true), prefix]).catch(() => {});
  const pong = pongWaiter();
  await subA.subscribe(`${prefix}inst:A`, (m) => {
    const dec = decodeDelivery(m);
    if (dec?.delivery.userIds.includes('a')) pong.fire();
  });
  await subB.subscribe(`${prefix}inst:B`, (m) => {
    const dec = decodeDelivery(m);
    if (dec?.delivery.userIds.includes('b')) publish(pubB, 'B', { userIds: ['a'], frame: dec.delivery.frame });
  });
  const rtts = await pingPong(() => publish(pubA, 'A', { userIds: ['b'], frame: FRAME }), pong.wait);
  [pubA, subA, pubB, subB].forEach(closeRedis);
  return percentiles(rtts);
}

/** Worker side of the cluster layout: role 'ping' (user a) or 'pong' (user b). */
async function clusterWorker(): Promise<void> {
  const role = process.env.HOP_ROLE;
  const bus: Bus = new ClusterBus(logger);
  const pong = pongWaiter();
  if (role === 'pong') {
    await bus.start((d) => d.userIds.includes('b') && bus.publish({ userIds: ['a'], frame: d.frame }));
    bus.track('b', true);
  } else {
    await bus.start((d) => d.userIds.includes('a') && pong.fire());
    bus.track('a', true);
  }
  process.send!({ hop: 'ready' });
  process.on('message', async (m: { hop?: string }) => {
    if (m?.hop === 'exit') process.exit(0);
    if (m?.hop !== 'run' || role !== 'ping') return;
    const rtts = await pingPong(() => bus.publish({ userIds: ['b'], frame: FRAME }), pong.wait);
    process.send!({ hop: 'result', result: percentiles(rtts) });
  });
}

/** Primary side of the cluster layout: fork ping + pong workers, run RUNS runs. */
async function clusterPrimary(): Promise<Result[]> {
  cluster.setupPrimary({ serialization: 'advanced' });
  const hub = new ClusterHub({ graceMs: 0, logger });
  hub.attach();
  const ping = cluster.fork({ HOP_ROLE: 'ping' });
  const pong = cluster.fork({ HOP_ROLE: 'pong' });
  const ready = (w: typeof ping) => new Promise<void>((r) => w.on('message', (m: { hop?: string }) => m?.hop === 'ready' && r()));
  await Promise.all([ready(ping), ready(pong)]);
  const results: Result[] = [];
  for (let run = 0; run < RUNS; run++) {
    const res = new Promise<Result>((r) => {
      const on = (m: { hop?: string; result?: Result }) => {
        if (m?.hop !== 'result') return;
        ping.off('message', on);
        r(m.result!);
      };
      ping.on('message', on);
    });
    ping.send({ hop: 'run' });
    results.push(await res);
  }
  for (const w of [ping, pong]) w.send({ hop: 'exit' });
  hub.close();
  return results;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number) => `${(x * 1000).toFixed(0).padStart(5)} µs`;

function report(name: string, runs: Result[]): void {
  const per = runs.map((r) => `p50 ${fmt(r.p50)} p99 ${fmt(r.p99)}`).join(' | ');
  process.stdout.write(`${name.padEnd(20)} median of ${runs.length}: p50 ${fmt(median(runs.map((r) => r.p50)))}  p99 ${fmt(median(runs.map((r) => r.p99)))}   [${per}]\n`);
}

async function cleanup(prefix: string): Promise<void> {
  const c = createRedis(REDIS_URL, 'hop-cleanup', logger);
  if (await waitReady(c, 2000)) {
    const keys: string[] = [];
    for await (const batch of c.scanIterator({ MATCH: `${prefix}*`, COUNT: 100 })) keys.push(...batch);
    if (keys.length) await c.del(keys);
  }
  closeRedis(c);
}

if (cluster.isWorker) {
  await clusterWorker();
} else {
  const prefix = `hop:${randomBytes(4).toString('hex')}:`;
  process.stdout.write(`hop latency: ${RUNS} runs × ${N} round trips (+${WARMUP} warm-up), frame ${FRAME.length} B; one-way = RTT/2\n`);
  const perUser: Result[] = [];
  const perInstance: Result[] = [];
  for (let i = 0; i < RUNS; i++) {
    perUser.push(await redisPerUser(prefix));
    perInstance.push(await redisPerInstance(prefix));
  }
  report('redis per-user', perUser);
  report('redis per-instance', perInstance);
  report('cluster primary', await clusterPrimary());
  await cleanup(prefix);
  process.exit(0);
}
