/**
 * Command-line options of `npm run bench` (all optional; times in seconds on the command
 * line, milliseconds in {@link BenchOptions}).
 */
import { parseArgs } from 'node:util';

/** Every scenario id, in run order. */
export const SCENARIO_IDS = ['dm-throughput', 'memory', 'dm-latency', 'connect', 'idle', 'group-fanout', 'cluster'] as const;
/** Generator clients' opening handshake: see {@link BenchOptions.clientHandshake}. */
export type ClientHandshake = 'net' | 'ws';

/** A scenario id. */
export type ScenarioId = (typeof SCENARIO_IDS)[number];

/** Parsed options. */
export interface BenchOptions {
  scenarios: ScenarioId[];
  /** Measured window, ms. */
  durationMs: number;
  /** Warm-up before the window, ms. */
  warmupMs: number;
  /** Upper bound of the drain after the last send, ms. */
  drainMs: number;
  /** Runs per scenario. */
  runs: number;
  /** Load-generator processes. */
  loadgens: number;
  /** DM/s offered in dm-throughput (and cluster). */
  throughputRate: number;
  /** DM/s offered in dm-latency. */
  latencyRate: number;
  /** Sender/recipient pairs (distinct users) in the DM scenarios. */
  pairs: number;
  /** Connected devices per recipient. */
  devices: number;
  /** Content size of each message, bytes. */
  contentBytes: number;
  /** Connections in the idle/connect scenarios. */
  connections: number;
  /** Idle time before the steady RSS reading of the idle scenario, ms. */
  idleSettleMs: number;
  /** In-flight connection attempts per load generator. */
  connectConcurrency: number;
  /** Connections opened, authenticated and closed (other users) before the measured connect burst. */
  connectWarmup: number;
  /** Members (online, one connection each) of the fan-out group. */
  groupSize: number;
  /** Group messages per second offered. */
  groupRate: number;
  /** Members sending to the group. */
  groupSenders: number;
  /** Bind clients to this many distinct loopback source addresses (0 = don't bind). */
  sourceIps: number;
  /** Who does the generators' opening handshake: `net` (./upgrade.ts, then `ws`) or `ws` (all of it). */
  clientHandshake: ClientHandshake;
  /** Extra server environment, `KEY=VALUE`. */
  serverEnv: Record<string, string>;
  /** Keep server/PostgreSQL logs and print where. */
  keepLogs: boolean;
  /** Run the single-process server from an esbuild bundle on plain node (no tsx loader). */
  bundle: boolean;
  /** Disk flush probe interval, ms (./flush-probe.ts; 0 = off). */
  flushProbeMs: number;
}

const HELP = `usage: npm run bench -- [options]
  --scenarios a,b      ${SCENARIO_IDS.join(',')} (default: all)
  --duration S         measured window per run (30)      --warmup S   warm-up (5)
  --runs N             runs per scenario (3)             --drain S    max drain after sends (10)
  --loadgens N         load-generator processes (2)
  --rate N             dm-throughput DM/s (2000)         --latency-rate N  dm-latency DM/s (1000)
  --pairs N            sender/recipient pairs (200)      --devices N  devices per recipient (2)
  --content-bytes N    message size (100)
  --connections N      idle/connect connections (10000)  --connect-concurrency N per loadgen (200)
  --connect-warmup N   connections opened, authenticated and closed before the measured
                       connect burst, after the idle base reading (2000; 0 = a cold server)
  --idle-settle S      idle time before the steady RSS reading (30; one more reading at 5 s)
  --group-size N       group members online (1000)       --group-rate N  group msgs/s (100)
  --group-senders N    members sending (10)
  --source-ips N       bind clients to N loopback addresses 127.1.x.y (0 = no)
  --client-handshake net|ws  generator clients' opening handshake: net (a plain socket,
                       then a ws WebSocket; default) or ws (ws's own, through http.request)
  --server-env K=V     extra server environment (repeatable)
  --keep-logs          keep server/PostgreSQL logs
  --bundle             run the single-process server as an esbuild bundle on plain node
                       (default: node --import tsx src/server.ts, whose loader adds ~30 MB RSS)
  --flush-probe MS     time a 4 KiB write + fdatasync beside the database every MS ms and
                       match slow ones (>= 10 ms) with slow-ack bursts (10; 0 = off)
env: BENCH_DATABASE_URL, BENCH_REDIS_URL (use these instead of private ones), BENCH_STRICT=1`;

/** Parse `argv` (without node and script). Prints help and exits on --help; throws on bad values. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenarios: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      drain: { type: 'string' },
      runs: { type: 'string' },
      loadgens: { type: 'string' },
      rate: { type: 'string' },
      'latency-rate': { type: 'string' },
      pairs: { type: 'string' },
      devices: { type: 'string' },
      'content-bytes': { type: 'string' },
      connections: { type: 'string' },
      'idle-settle': { type: 'string' },
      'connect-concurrency': { type: 'string' },
      'connect-warmup': { type: 'string' },
      'group-size': { type: 'string' },
      'group-rate': { type: 'string' },
      'group-senders': { type: 'string' },
      'source-ips': { type: 'string' },
      'client-handshake': { type: 'string' },
      'server-env': { type: 'string', multiple: true },
      'keep-logs': { type: 'boolean' },
      bundle: { type: 'boolean' },
      'flush-probe': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const num = (name: string, raw: string | undefined, def: number, min: number, max: number): number => {
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name}: expected a number in ${min}..${max}, got ${raw}`);
    return n;
  };
  const scenarios = values.scenarios ? values.scenarios.split(',').map((s) => s.trim()).filter(Boolean) : [...SCENARIO_IDS];
  for (const s of scenarios) if (!(SCENARIO_IDS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s}; known: ${SCENARIO_IDS.join(', ')}`);
  const clientHandshake = values['client-handshake'] ?? 'net';
  if (clientHandshake !== 'net' && clientHandshake !== 'ws') throw new Error(`--client-handshake: expected net or ws, got ${clientHandshake}`);
  const serverEnv: Record<string, string> = {};
  for (const kv of values['server-env'] ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`--server-env: expected KEY=VALUE, got ${kv}`);
    serverEnv[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return {
    scenarios: SCENARIO_IDS.filter((s) => scenarios.includes(s)),
    durationMs: num('duration', values.duration, 30, 1, 3600) * 1000,
    warmupMs: num('warmup', values.warmup, 5, 0, 600) * 1000,
    drainMs: num('drain', values.drain, 10, 1, 600) * 1000,
    runs: Math.round(num('runs', values.runs, 3, 1, 50)),
    loadgens: Math.round(num('loadgens', values.loadgens, 2, 1, 16)),
    throughputRate: num('rate', values.rate, 2000, 1, 1_000_000),
    latencyRate: num('latency-rate', values['latency-rate'], 1000, 1, 1_000_000),
    pairs: Math.round(num('pairs', values.pairs, 200, 1, 100_000)),
    devices: Math.round(num('devices', values.devices, 2, 1, 10)),
    contentBytes: Math.round(num('content-bytes', values['content-bytes'], 100, 40, 20_000)),
    connections: Math.round(num('connections', values.connections, 10_000, 1, 200_000)),
    idleSettleMs: num('idle-settle', values['idle-settle'], 30, 5, 600) * 1000,
    connectConcurrency: Math.round(num('connect-concurrency', values['connect-concurrency'], 200, 1, 10_000)),
    connectWarmup: Math.round(num('connect-warmup', values['connect-warmup'], 2000, 0, 200_000)),
    groupSize: Math.round(num('group-size', values['group-size'], 1000, 2, 100_000)),
    groupRate: num('group-rate', values['group-rate'], 100, 0.1, 100_000),
    groupSenders: Math.round(num('group-senders', values['group-senders'], 10, 1, 1000)),
    sourceIps: Math.round(num('source-ips', values['source-ips'], 0, 0, 60_000)),
    clientHandshake,
    serverEnv,
    keepLogs: values['keep-logs'] ?? false,
    bundle: values.bundle ?? false,
    flushProbeMs: num('flush-probe', values['flush-probe'], 10, 0, 10_000),
  };
}
