/**
 * RedisBus (src/fanout/redisBus.ts) on the real Redis (TEST_REDIS_URL), two bus objects
 * on their own connections standing for two instances under one key prefix: the
 * publishes of one event-loop turn go out as one command and arrive complete and in
 * order per recipient, past the script's batch size too; a lone publish is one PUBLISH;
 * local delivery is synchronous; own echoes are dropped; publishes queued when the bus
 * stops still go out; deliveries to ROUTE_MIN_USERS or more users are published once per
 * instance holding any of them (the presence hashes `pu:<user>`), in order with the rest.
 * Sealed (BUS_ENCRYPTION, the default in a server): Redis sees no frame text, and a frame
 * published without the key (forged, plaintext, malformed, a sealed one copied to another
 * user's channel, replayed, or sealed over a minute before or after it arrives) is
 * delivered to nobody, and counted by reason (RedisBus.refusedByReason, and
 * chat_bus_refused_total{reason} through the onRefused hook). A DM to two users held by
 * one other instance is decoded (opened) there once, each user getting one delivery naming
 * only them; a copy of it arriving later is still refused as a replay.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BusSeal } from '../../src/crypto/busSeal.ts';
import { BodyCipher } from '../../src/crypto/cipher.ts';
import type { Delivery } from '../../src/fanout/bus.ts';
import { PUBLISH_BATCH, RedisBus, ROUTE_MIN_USERS, type RedisBusOptions } from '../../src/fanout/redisBus.ts';
import { closeRedis, createRedis, waitReady, type Redis } from '../../src/fanout/redisClient.ts';
import { BUS_REFUSALS, type BusRefusal } from '../../src/fanout/refusals.ts';
import { encodeDelivery, SEALED_MAX_AGE_MS } from '../../src/fanout/wire.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { scaleEnabled, sleep, until, warnIfSkipped } from '../helpers/scaleProcs.ts';
import { FreezableProxy } from '../helpers/tcpProxy.ts';

warnIfSkipped('redis-bus.test.ts');

const url = process.env.TEST_REDIS_URL ?? '';
const prefix = `tb${randomBytes(4).toString('hex')}:`;
const logger = createLogger('error', { silent: true });

/** One instance: its bus and what its handler received, as `user|frame` strings and as deliveries (copied when received). */
interface Instance {
  bus: RedisBus;
  got: string[];
  deliveries: Delivery[];
  pub: Redis;
  id: string;
}

describe.skipIf(!scaleEnabled)('RedisBus on Redis', () => {
  const clients: Redis[] = [];
  const buses: RedisBus[] = [];

  async function instance(name: string, users: string[], extra: Partial<RedisBusOptions> = {}, subUrl = url): Promise<Instance> {
    const pub = createRedis(url, `${name}-pub`, logger);
    const sub = createRedis(subUrl, `${name}-sub`, logger);
    clients.push(pub, sub);
    expect(await waitReady(pub, 5000)).toBe(true);
    expect(await waitReady(sub, 5000)).toBe(true);
    const id = `${name}-${randomBytes(3).toString('hex')}`;
    const bus = new RedisBus(pub, sub, { prefix, instanceId: id, logger, ...extra });
    buses.push(bus);
    const got: string[] = [];
    const deliveries: Delivery[] = [];
    // As the gateway's registry: deliver to the users held here.
    const held = new Set(users);
    await bus.start((d: Delivery) => {
      deliveries.push({ ...d, userIds: [...d.userIds] });
      for (const u of d.userIds) if (held.has(u)) got.push(`${u}|${d.frame}`);
    });
    // As presence's admission does before a login is acknowledged (src/presence/redisScripts.ts).
    for (const u of users) await pub.hIncrBy(`${prefix}pu:${u}`, id, 1);
    await Promise.all(users.map((u) => bus.track(u, true)));
    return { bus, got, deliveries, pub, id };
  }

  let a: Instance;
  let b: Instance;
  beforeAll(async () => {
    a = await instance('a', ['1']);
    b = await instance('b', ['1', '2', '3']);
  });
  afterAll(async () => {
    for (const bus of buses) await bus.stop();
    for (const c of clients) closeRedis(c);
  });

  it('sends the publishes of one turn as one command: all arrive, in order per recipient; local delivery is synchronous and echoes are dropped', async () => {
    a.got.length = 0;
    b.got.length = 0;
    const before = a.bus.publishCommands;
    for (let i = 0; i < 5; i++) {
      a.bus.publish({ userIds: ['2', '1'], frame: `m${i}` });
      a.bus.publish({ userIds: ['3'], frame: `n${i}` });
    }
    // Local delivery (user 1 is held by a too) happened before the publish returned.
    expect(a.got).toEqual([0, 1, 2, 3, 4].map((i) => `1|m${i}`));
    await until('b received 15', () => b.got.length === 15, 5000, 10);
    // 15 publishes (5 × users 2 and 1, 5 × user 3) in one command.
    expect(a.bus.publishCommands - before).toBe(1);
    for (const user of ['1', '2', '3']) {
      const frames = b.got.filter((g) => g.startsWith(`${user}|`)).map((g) => g.slice(2));
      expect(frames).toEqual([0, 1, 2, 3, 4].map((i) => (user === '3' ? `n${i}` : `m${i}`)));
    }
    await sleep(100);
    // a's own publishes to user 1 came back from Redis as echoes and were dropped.
    expect(a.got).toHaveLength(5);
    expect(b.got).toHaveLength(15);
  });

  it('splits a turn of more than PUBLISH_BATCH publishes over several commands, order kept; a lone publish is one PUBLISH', async () => {
    b.got.length = 0;
    let before = a.bus.publishCommands;
    const n = PUBLISH_BATCH * 2 + 5;
    for (let i = 0; i < n; i++) a.bus.publish({ userIds: ['2'], frame: `k${i}` });
    await until('b received n', () => b.got.length === n, 5000, 10);
    expect(a.bus.publishCommands - before).toBe(3);
    expect(b.got).toEqual(Array.from({ length: n }, (_, i) => `2|k${i}`));

    b.got.length = 0;
    before = a.bus.publishCommands;
    a.bus.publish({ userIds: ['3'], frame: 'alone', exceptConnId: 'c1' });
    await until('b received 1', () => b.got.length === 1, 5000, 10);
    expect(a.bus.publishCommands - before).toBe(1);
    expect(b.got).toEqual(['3|alone']);
  });

  it(`routes a delivery to ${ROUTE_MIN_USERS}+ users per instance: one PUBLISH to each other instance holding any of them, none per user, no echo`, async () => {
    const monitor = createRedis(url, 'monitor', logger);
    clients.push(monitor);
    expect(await waitReady(monitor, 5000)).toBe(true);
    const channels: string[] = [];
    await monitor.pSubscribe(`${prefix}*`, (_m, ch) => channels.push(ch));
    a.got.length = 0;
    b.got.length = 0;
    // a holds 1; b holds 1, 2, 3; nobody holds 4.
    a.bus.publish({ userIds: ['1', '2', '3', '4'], frame: 'group' });
    expect(a.got).toEqual(['1|group']);
    await until('b received 3', () => b.got.length === 3, 5000, 10);
    expect(b.got.sort()).toEqual(['1|group', '2|group', '3|group']);
    await sleep(100);
    expect(channels).toEqual([`${prefix}i:${b.id}`]);
    expect(a.got).toEqual(['1|group']);

    // Order per recipient is kept across both layouts within a turn.
    b.got.length = 0;
    a.bus.publish({ userIds: ['2'], frame: 'd1' });
    a.bus.publish({ userIds: ['1', '2', '3'], frame: 'g' });
    a.bus.publish({ userIds: ['2', '1'], frame: 'd2' });
    await until('b received 6', () => b.got.length === 6, 5000, 10);
    expect(b.got.filter((g) => g.startsWith('2|'))).toEqual(['2|d1', '2|g', '2|d2']);
    expect(b.got.filter((g) => g.startsWith('1|'))).toEqual(['1|g', '1|d2']);
    await monitor.pUnsubscribe();
  });

  it('sends publishes still queued when the bus stops, before its connection is closed', async () => {
    b.got.length = 0;
    const c = await instance('c', []);
    c.bus.publish({ userIds: ['2'], frame: 'last' });
    // As at shutdown (src/app.ts): the bus stops, then its connections are destroyed.
    await c.bus.stop();
    closeRedis(c.pub);
    await until('b received 1', () => b.got.length === 1, 5000, 10);
    expect(b.got).toEqual(['2|last']);
  });

  /** A PSUBSCRIBE to this prefix on its own connection: what Redis carried, as channel and message. */
  async function spyOn(): Promise<{ channel: string; message: string }[]> {
    const spy = createRedis(url, 'spy', logger);
    clients.push(spy);
    expect(await waitReady(spy, 5000)).toBe(true);
    const seen: { channel: string; message: string }[] = [];
    await spy.pSubscribe(`${prefix}*`, (message, channel) => seen.push({ channel, message }));
    return seen;
  }

  /** A sealed wire message for `userIds` from a process holding `keys`, sealed `ageMs` ago (negative: in the future). */
  function sealedAt(keys: BodyCipher, userIds: string[], frame: string, ageMs = 0): string {
    const at = Date.now() - ageMs;
    const now = vi.spyOn(Date, 'now').mockReturnValue(at);
    try {
      return encodeDelivery(`other-${randomBytes(3).toString('hex')}`, { userIds, frame }, false, new BusSeal(keys));
    } finally {
      now.mockRestore();
    }
  }

  /** The refusal counts of `bus` that changed since `before`. */
  function grown(bus: RedisBus, before: Readonly<Record<BusRefusal, number>>): Partial<Record<BusRefusal, number>> {
    const out: Partial<Record<BusRefusal, number>> = {};
    for (const r of BUS_REFUSALS) if (bus.refusedByReason[r] !== before[r]) out[r] = bus.refusedByReason[r] - before[r];
    return out;
  }

  it('sealed: delivered between instances sharing the key, no frame text on Redis; forged, plaintext, malformed, redirected, replayed and stale frames reach nobody, counted by reason in /metrics', async () => {
    const keys = new BodyCipher([['k1', randomBytes(32)]]);
    const metrics = new Metrics({ connections: () => 0, users: () => 0 });
    const c = await instance('c', ['40'], { seal: new BusSeal(keys) });
    const d = await instance('d', ['41', '42', '43'], { seal: new BusSeal(keys), onRefused: (r) => metrics.busRefused(r) });
    const seen = await spyOn();

    c.bus.publish({ userIds: ['41'], frame: '{"type":"dm","content":"top secret one"}' });
    c.bus.publish({ userIds: ['41', '42', '43'], frame: '{"type":"group","content":"top secret all"}' });
    await until('d received 4', () => d.got.length === 4, 5000, 10);
    expect(d.got).toEqual(['41|{"type":"dm","content":"top secret one"}', ...['41', '42', '43'].map((u) => `${u}|{"type":"group","content":"top secret all"}`)]);
    await until('the spy saw both publishes', () => seen.length >= 2, 5000, 10);
    expect(seen.map((m) => m.message).join('\n')).not.toContain('secret');
    expect(d.bus.refused).toBe(0);

    /** Publish what `act` publishes; d refuses exactly one message, for `reason`, and delivers nothing. */
    const refusedFor = async (reason: BusRefusal, act: () => Promise<unknown>) => {
      const [before, total, delivered] = [{ ...d.bus.refusedByReason }, d.bus.refused, d.got.length];
      await act();
      await until(`d refused it (${reason})`, () => d.bus.refused > total, 5000, 10);
      expect(grown(d.bus, before)).toEqual({ [reason]: 1 });
      expect(d.got).toHaveLength(delivered);
    };
    // Someone with access to Redis but not the key: a plaintext frame, a forged seal, garbage.
    await refusedFor('plaintext', () => c.pub.publish(`${prefix}u:41`, `{"o":"intruder"}\n{"type":"dm","content":"forged"}`));
    await refusedFor('unauthenticated', () => c.pub.publish(`${prefix}u:41`, `{"so":"intruder","u":["41"],"k":"k1","z":"${'A'.repeat(22)}","s":${Date.now()}}\n${randomBytes(80).toString('base64')}`));
    await refusedFor('malformed', () => c.pub.publish(`${prefix}u:41`, 'no header line'));
    await refusedFor('malformed', () => c.pub.publish(`${prefix}u:41`, `{"so":"intruder","u":["41"]}\n${randomBytes(80).toString('base64')}`));
    // A real sealed message for 41 copied to 42's channel later: older than c's last one, a replay.
    const forOne = seen.find((m) => m.message.includes('"u":["41"]'))!.message;
    await refusedFor('replayed', () => c.pub.publish(`${prefix}u:42`, forOne));
    // The latest sealed message of c, for 41, copied to 42's channel: in order, but not for 42.
    const spied = seen.length;
    c.bus.publish({ userIds: ['41'], frame: 'after' });
    await until('d received the next real frame', () => d.got.length === 5, 5000, 10);
    expect(d.got.at(-1)).toBe('41|after');
    const latest = await until('the spy saw it', () => seen.slice(spied).find((m) => m.channel === `${prefix}u:41` && m.message.startsWith(`{"so":"${c.id}",`) && m.message !== forOne), 5000, 10);
    await refusedFor('redirected', () => c.pub.publish(`${prefix}u:42`, latest.message));
    // The first sealed message replayed on its own channel: its counter went back.
    await refusedFor('replayed', () => c.pub.publish(`${prefix}u:41`, forOne));
    // Sealed with the key, but over a minute before (or after: clocks apart) it arrives.
    await refusedFor('stale', () => c.pub.publish(`${prefix}u:41`, sealedAt(keys, ['41'], 'old', SEALED_MAX_AGE_MS + 5000)));
    await refusedFor('stale', () => c.pub.publish(`${prefix}u:41`, sealedAt(keys, ['41'], 'ahead', -SEALED_MAX_AGE_MS - 5000)));
    c.bus.publish({ userIds: ['41'], frame: 'last' });
    await until('d received the last real frame', () => d.got.length === 6, 5000, 10);
    expect(d.got.at(-1)).toBe('41|last');

    const counts = { malformed: 2, unauthenticated: 1, plaintext: 1, stale: 2, replayed: 2, redirected: 1 };
    expect(d.bus.refusedByReason).toEqual(counts);
    expect(d.bus.refused).toBe(9);
    expect(c.bus.refused).toBe(0);
    const text = await metrics.text();
    for (const r of BUS_REFUSALS) expect(text).toContain(`chat_bus_refused_total{reason="${r}"} ${counts[r]}\n`);
  });

  it('decodes a DM to two users held by one other instance once: each user gets one delivery naming only them; a later copy is judged again (stale, replayed; the latest counter again on a channel it came on too), a copy to a user not named is refused', async () => {
    const keys = new BodyCipher([['k1', randomBytes(32)]]);
    const e = await instance('e', ['60'], { seal: new BusSeal(keys) });
    const f = await instance('f', ['61', '62'], { seal: new BusSeal(keys) });
    const seen = await spyOn();
    const frame = '{"type":"new_private_message","content":"pair"}';
    const decoded = f.bus.decoded;
    // As a DM: the sender's other devices (61) and the recipient (62), one wire string on two channels.
    e.bus.publish({ userIds: ['61', '62'], frame, exceptConnId: 'conn-1' });
    await until('f received 2', () => f.deliveries.length === 2, 5000, 10);
    await sleep(100);
    expect(f.deliveries).toEqual([
      { userIds: ['61'], frame, exceptConnId: 'conn-1' },
      { userIds: ['62'], frame, exceptConnId: 'conn-1' },
    ]);
    expect(f.bus.decoded - decoded).toBe(1);
    const pair = seen.filter((m) => m.channel.startsWith(`${prefix}u:6`));
    expect(pair.map((m) => m.channel)).toEqual([`${prefix}u:61`, `${prefix}u:62`]);
    expect(pair[0]!.message).toBe(pair[1]!.message);

    // The same string next, but in a later turn: not taken from the decode of the pair, so
    // judged again (here with f's clock a minute ahead: stale).
    let before = { ...f.bus.refusedByReason };
    const realNow = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + SEALED_MAX_AGE_MS + 5000);
    try {
      await e.pub.publish(`${prefix}u:61`, pair[0]!.message);
      await until('f refused the late copy', () => f.bus.refused >= 1, 5000, 10);
    } finally {
      ahead.mockRestore();
    }
    expect(grown(f.bus, before)).toEqual({ stale: 1 });
    expect(f.bus.decoded - decoded).toBe(2);

    // The same string in a later turn, with nothing from e between and the clock right, on a
    // channel it already came on: its counter is e's latest, but it arrived there already.
    before = { ...f.bus.refusedByReason };
    await e.pub.publish(`${prefix}u:62`, pair[0]!.message);
    await until('f refused the replay', () => f.bus.refused >= 2, 5000, 10);
    expect(grown(f.bus, before)).toEqual({ replayed: 1 });
    expect(f.bus.decoded - decoded).toBe(3);

    // The same string again after another message from e: decoded again, a replay on both channels.
    e.bus.publish({ userIds: ['61'], frame: 'next' });
    await until('f received next', () => f.deliveries.length === 3, 5000, 10);
    const again = "redis.call('PUBLISH', ARGV[1], ARGV[3]); redis.call('PUBLISH', ARGV[2], ARGV[3]); return 2";
    before = { ...f.bus.refusedByReason };
    await e.pub.eval(again, { arguments: [`${prefix}u:61`, `${prefix}u:62`, pair[0]!.message] });
    await until('f refused both copies', () => f.bus.refused >= 4, 5000, 10);
    expect(grown(f.bus, before)).toEqual({ replayed: 2 });
    expect(f.bus.decoded - decoded).toBe(6);

    // A fresh message for 61 alone, copied to 62's channel right behind it (same turn, decoded once): refused there.
    before = { ...f.bus.refusedByReason };
    const decodedBefore = f.bus.decoded;
    await e.pub.eval(again, { arguments: [`${prefix}u:61`, `${prefix}u:62`, sealedAt(keys, ['61'], 'for 61 only')] });
    await until('f refused the copy', () => f.bus.refused >= 5, 5000, 10);
    expect(grown(f.bus, before)).toEqual({ redirected: 1 });
    expect(f.bus.decoded - decodedBefore).toBe(1);

    e.bus.publish({ userIds: ['62'], frame: 'last' });
    await until('f received last', () => f.deliveries.length === 5, 5000, 10);
    await sleep(100);
    expect(f.deliveries.slice(2).map((d) => `${d.userIds.join()}|${d.frame}`)).toEqual(['61|next', '61|for 61 only', '62|last']);
  });
  it('a subscriber whose connection stops carrying data is found by its heartbeats, reconnected, and its users told to reconnect and sync', async () => {
    const target = new URL(url);
    const proxy = new FreezableProxy({ host: target.hostname, port: Number(target.port || 6379) });
    await proxy.start();
    try {
      const g = await instance('g', ['70']);
      const h = await instance('h', ['71', '72'], { gapResyncMs: 50, subscriberWatch: { everyMs: 100, stallMs: 600 } }, `redis://127.0.0.1:${proxy.port}`);
      g.bus.publish({ userIds: ['71'], frame: 'before' });
      await until('h got before', () => h.got.includes('71|before'), 5000, 10);
      // Healthy: heartbeats arrive, nothing is restarted.
      await sleep(1000);
      expect(h.bus.watch.restarts).toBe(0);
      // The route to h's subscriber goes dead (socket open, nothing forwarded to it).
      proxy.freeze('down');
      g.bus.publish({ userIds: ['71'], frame: 'lost' });
      await until('h restarted its subscriber', () => h.bus.watch.restarts === 1, 5000, 20);
      proxy.thaw();
      await until('h told its users to resync', () => h.deliveries.some((d) => d.close?.code === 4503 && d.userIds.includes('71') && d.userIds.includes('72')), 5000, 20);
      g.bus.publish({ userIds: ['72'], frame: 'after' });
      await until('h got after', () => h.got.includes('72|after'), 5000, 10);
      expect(h.got).not.toContain('71|lost');
      expect(h.bus.watch.restarts).toBe(1);
    } finally {
      await proxy.close();
    }
  }, 20_000);
});
