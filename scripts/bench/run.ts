/**
 * `npm run bench`: performance scenarios against a private PostgreSQL (and Redis for the
 * cluster), each run on a fresh server and database, load from separate processes.
 * Prints a table of median [min..max] per figure and writes bench/results/<timestamp>.json.
 * BENCH_STRICT=1 → exit 1 when a target is missed. See ./args.ts for the options.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { SCENARIO_IDS, parseBenchArgs, type BenchOptions, type ScenarioId } from './args.ts';
import { CLUSTER_ENTRY, RAISED_LIMITS, REPO_ROOT, SERVER_ENTRY, serverEnv, startInfra, stopInfra, WAL_WARMUP_MB, type BenchContext } from './fixture.ts';
import { anyMiss, renderTable, summarizeRuns, type RunResult, type ScenarioOutcome } from './stats.ts';
import { clusterFigures, latencyFigures, measureDm, memoryFigures, throughputFigures, type DmMeasure } from './scenarios/dm.ts';
import { connectFigures, idleFigures, measureConnections } from './scenarios/connections.ts';
import { groupFigures, measureGroup } from './scenarios/group.ts';
import { bundleEntries } from './bundle.ts';

const TITLES: Record<ScenarioId, string> = {
  'dm-throughput': 'durable DM throughput (encrypt, commit, ack, deliver to every recipient device)',
  memory: 'RSS after the throughput run vs after connecting',
  'dm-latency': 'DM latency at a constant 1,000 DM/s',
  connect: 'connect + authenticate (JWT + revocation + user lookup)',
  idle: 'idle authenticated connections: RSS per connection',
  'group-fanout': 'one group message to every online member connection',
  cluster: 'cluster, 2 workers + Redis, vs one process',
};

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

class Outcomes {
  readonly map = new Map<ScenarioId, ScenarioOutcome>();
  constructor(readonly selected: readonly ScenarioId[]) {
    for (const id of selected) this.map.set(id, { id, title: TITLES[id], runs: [], summary: [] });
  }
  has(id: ScenarioId): boolean {
    return this.map.has(id);
  }
  add(id: ScenarioId, r: RunResult): void {
    const o = this.map.get(id);
    if (!o) return;
    o.runs.push(r);
    const brief = r.figures.filter((f) => f.target).map((f) => `${f.name}=${f.value === null ? 'n/a' : +f.value.toFixed(3)}`);
    log(`${id} run ${o.runs.length}: ${brief.join(', ')}`);
    const t = (r.info.traffic ?? (r.info.cluster as { traffic?: unknown } | undefined)?.traffic) as
      | { drainComplete?: boolean; unacked?: number; drainMs?: number; errorCodes?: Record<string, number> }
      | undefined;
    if (t?.errorCodes && Object.keys(t.errorCodes).length) log(`  error replies: ${JSON.stringify(t.errorCodes)}`);
    if (t && t.drainComplete === false) log(`  note: drain stopped at its bound (${t.drainMs} ms) with ${t.unacked} sends unanswered; "lost" may include deliveries still in flight (raise --drain)`);
  }
  fail(ids: ScenarioId[], field: 'error' | 'unavailable', msg: string): void {
    for (const id of ids) {
      const o = this.map.get(id);
      if (o) o[field] = msg;
    }
  }
  list(): ScenarioOutcome[] {
    return this.selected.map((id) => {
      const o = this.map.get(id)!;
      return { ...o, summary: summarizeRuns(o.runs) };
    });
  }
}

/** Run `body` for each run; stop at the first failure or "not available" (recorded on `ids`). */
async function repeat(out: Outcomes, ids: ScenarioId[], runs: number, body: (run: number) => Promise<string | void>): Promise<void> {
  const active = ids.filter((id) => out.has(id));
  if (!active.length) return;
  for (let r = 1; r <= runs; r++) {
    log(`${active.join(' + ')}: run ${r}/${runs} (host load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} CPUs)`);
    try {
      const unavailable = await body(r);
      if (unavailable) {
        out.fail(active, 'unavailable', unavailable);
        log(`${active.join(' + ')}: not available (${unavailable})`);
        return;
      }
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      out.fail(active, 'error', msg.split('\n')[0]!);
      log(`${active.join(' + ')} failed: ${msg}`);
      return;
    }
  }
}

async function runAll(ctx: BenchContext, out: Outcomes): Promise<void> {
  const { opts } = ctx;
  const baseline: DmMeasure[] = [];
  await repeat(out, ['dm-throughput', 'memory'], opts.runs, async (r) => {
    const m = await measureDm(ctx, opts.throughputRate, { label: `dmtp_r${r}`, settle: out.has('memory') });
    if (m.unavailable) return m.unavailable;
    baseline.push(m);
    out.add('dm-throughput', throughputFigures(m));
    out.add('memory', memoryFigures(m));
  });
  await repeat(out, ['dm-latency'], opts.runs, async (r) => {
    const m = await measureDm(ctx, opts.latencyRate, { label: `dmlat_r${r}` });
    if (m.unavailable) return m.unavailable;
    out.add('dm-latency', latencyFigures(m));
  });
  await repeat(out, ['connect', 'idle'], opts.runs, async (r) => {
    const m = await measureConnections(ctx, `conn_r${r}`);
    out.add('connect', connectFigures(m, opts.connections));
    out.add('idle', idleFigures(m, opts.connections));
  });
  await repeat(out, ['group-fanout'], opts.runs, async (r) => {
    const m = await measureGroup(ctx, `group_r${r}`);
    if (m.unavailable) return m.unavailable;
    out.add('group-fanout', groupFigures(m, opts));
  });
  if (out.has('cluster') && !existsSync(join(REPO_ROOT, CLUSTER_ENTRY))) {
    out.fail(['cluster'], 'unavailable', `${CLUSTER_ENTRY} not found`);
    return;
  }
  await repeat(out, ['cluster'], opts.runs, async (r) => {
    const single = baseline[r - 1] ?? (await measureDm(ctx, opts.throughputRate, { label: `single_r${r}` }));
    if (single.unavailable) return single.unavailable;
    const cluster = await measureDm(ctx, opts.throughputRate, { label: `cluster_r${r}`, cluster: true });
    if (cluster.unavailable) return cluster.unavailable;
    out.add('cluster', clusterFigures(cluster, single));
  });
}

function writeJson(startedAt: Date, startLoad: number[], opts: BenchOptions, ctx: BenchContext | undefined, outcomes: ScenarioOutcome[]): string {
  const dir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const env = ctx ? serverEnv(ctx.infra, 'postgres://…', opts) : {};
  const limits = Object.fromEntries(RAISED_LIMITS.map((k) => [k, env[k]]));
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memBytes: totalmem(), node: process.version, loadAvgAtStart: startLoad, loadAvgAtEnd: loadavg() },
    options: opts,
    serverLimits: limits,
    sourceAddresses: opts.sourceIps ? `${opts.sourceIps} loopback addresses 127.1.x.y` : '127.0.0.1 only',
    clientHandshake: opts.clientHandshake === 'net' ? 'plain net socket (scripts/bench/upgrade.ts), then a ws WebSocket' : "ws's own (http.request)",
    serverRuntime: ctx ? (ctx.serverEntry.endsWith('.mjs') ? `node ${ctx.serverEntry} (esbuild bundle of ${SERVER_ENTRY})` : `node --import tsx ${ctx.serverEntry}`) : undefined,
    database: ctx?.infra.givenDb ? 'BENCH_DATABASE_URL' : `private PostgreSQL 15 (fsync on, synchronous_commit on; ${WAL_WARMUP_MB} MB of WAL written and recycled before the first run, CHECKPOINT before each run)`,
    scenarios: outcomes,
  };
  writeFileSync(file, JSON.stringify(report, null, 2));
  return file;
}

async function main(): Promise<void> {
  let opts: BenchOptions;
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`bench: ${(err as Error).message} (see --help)`);
    process.exit(2);
  }
  const startedAt = new Date();
  const startLoad = loadavg();
  const out = new Outcomes(opts.scenarios);
  let ctx: BenchContext | undefined;
  if (!existsSync(join(REPO_ROOT, SERVER_ENTRY))) {
    out.fail([...SCENARIO_IDS], 'error', `${SERVER_ENTRY} not found`);
  } else {
    log(`server ${SERVER_ENTRY} (cluster: ${CLUSTER_ENTRY})${opts.bundle ? ' (bundled, plain node)' : ' (node --import tsx)'}; scenarios ${opts.scenarios.join(', ')}; ${opts.runs} run(s) of ${opts.warmupMs / 1000}+${opts.durationMs / 1000} s; ${opts.loadgens} load generators`);
    try {
      // With --bundle both the single process and the cluster run as built (plain node).
      const [serverEntry, clusterEntry] = opts.bundle ? await bundleEntries(REPO_ROOT, [SERVER_ENTRY, CLUSTER_ENTRY]) : [SERVER_ENTRY, CLUSTER_ENTRY];
      const infra = await startInfra(opts.keepLogs, opts.flushProbeMs);
      ctx = { opts, infra, serverEntry: serverEntry!, clusterEntry: clusterEntry! };
      log(`database: ${infra.givenDb ? 'BENCH_DATABASE_URL' : `private PostgreSQL on port ${infra.ownPg!.port} (WAL warmed: ${WAL_WARMUP_MB} MB; CHECKPOINT before each run)`}; server logs in ${infra.logDir}`);
      try {
        await runAll(ctx, out);
      } finally {
        await stopInfra(infra, opts.keepLogs);
      }
    } catch (err) {
      log(`setup failed: ${(err as Error).stack ?? err}`);
      out.fail([...opts.scenarios], 'error', `setup failed: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const outcomes = out.list();
  const file = writeJson(startedAt, startLoad, opts, ctx, outcomes);
  console.log(renderTable(outcomes));
  console.log(`\nJSON: ${file}`);
  const busy = Math.max(startLoad[0]!, loadavg()[0]!);
  if (busy > cpus().length * 0.75) console.log(`note: host load average reached ${busy.toFixed(1)} on ${cpus().length} CPUs: other processes competed for CPU; figures are pessimistic`);
  if (process.env.BENCH_STRICT === '1' && anyMiss(outcomes)) {
    console.log('BENCH_STRICT: a target was missed');
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
