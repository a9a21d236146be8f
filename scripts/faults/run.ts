/**
 * `npm run test:faults`: the fault suite of "Delivery guarantees and resilience".
 *
 * Starts a private PostgreSQL and Redis, runs the chat server as two instances (A, B)
 * sharing them (and, for the worker-kill fault, A as the cluster server with 2 workers),
 * drives them with reconnecting clients (two devices per user, one homed on each
 * instance) keeping ≥ 200 messages in flight, injects each fault several times while the
 * traffic flows, and after each run checks every acknowledged message against the
 * database and every recipient device (see ./verify.ts). Prints the tables; exits 1 on
 * any loss, duplicate, unexpected observation or missed timing bound, 2 on a setup error.
 *
 * Options (environment or `--name=value`): FAULT_RUNS (3), FAULT_ONLY (comma-separated
 * fault ids), FAULT_USERS (12), FAULT_INFLIGHT (240), FAULT_WARM_MS (3000),
 * FAULT_POST_MS (4000), FAULT_SESSION_RECHECK_MS (1000), FAULT_SYNC_EVERY_MS (2000: each
 * device also syncs about this often while traffic flows; 0 = only after reconnects),
 * FAULT_KEEP_LOGS (0: 1 keeps the server logs).
 */
import { rmSync } from 'node:fs';
import { sleep } from '../lib/proc.ts';
import { FAULTS, type Fault, type Timing } from './faults.ts';
import { Fleet } from './fleet.ts';
import { startInfra, startTopology, stopInfra, type Infra, type Instance } from './infra.ts';
import { evidence, observations, runTable, summaryTable, timingFailed, timingTable } from './report.ts';
import { verifyRun, type RunResult } from './verify.ts';
import type { RetryPolicy } from './device.ts';

function opt(name: string, def: string): string {
  const arg = process.argv.find((a) => a.startsWith(`--${name.toLowerCase().replace(/^fault_/, '').replace(/_/g, '-')}=`));
  return arg ? arg.slice(arg.indexOf('=') + 1) : (process.env[name] ?? def);
}
const num = (name: string, def: number) => {
  const v = Number(opt(name, String(def)));
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}: expected a number`);
  return v;
};

const RUNS = num('FAULT_RUNS', 3);
const USERS = num('FAULT_USERS', 12);
const INFLIGHT = num('FAULT_INFLIGHT', 240);
const WARM_MS = num('FAULT_WARM_MS', 3000);
const POST_MS = num('FAULT_POST_MS', 4000);
const RECHECK_MS = num('FAULT_SESSION_RECHECK_MS', 1000);
const SYNC_EVERY_MS = num('FAULT_SYNC_EVERY_MS', 2000);
const KEEP_LOGS = opt('FAULT_KEEP_LOGS', '0') === '1';
const ONLY = opt('FAULT_ONLY', '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const RETRY: RetryPolicy = { maxAttempts: 40, deadlineMs: 45_000, baseMs: 100, capMs: 2000 };

const started = Date.now();
function log(msg: string): void {
  process.stderr.write(`[faults +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
}

/** One run of `fault`: fresh clients, traffic, the fault, settle, final sync, verdict. */
async function oneRun(infra: Infra, instances: [Instance, Instance], fault: Fault, run: number, timings: Timing[], seenGaps: Set<string>): Promise<RunResult> {
  await Promise.all(instances.map((i) => i.ready(120_000)));
  const devices = USERS * 2;
  const fleet = new Fleet({
    userIds: infra.userIds.slice(0, USERS),
    urls: [instances[0].wsUrl, instances[1].wsUrl],
    key: infra.key,
    window: Math.ceil(INFLIGHT / devices),
    retry: RETRY,
    prefix: `${fault.id.slice(0, 6)}${run}-${Date.now().toString(36)}-`,
    syncEveryMs: SYNC_EVERY_MS,
  });
  try {
    await fleet.connect(30_000);
    fleet.allowedCloses = new Set(fault.closes);
    const t0 = Date.now();
    fleet.startTraffic();
    await sleep(WARM_MS);
    await fault.inject({
      infra,
      instances,
      fleet,
      run,
      timing: (what, ms, limitMs, text) => timings.push({ fault: fault.id, run, what, ms, limitMs, text }),
      log: (m) => log(`${fault.id} #${run}: ${m}`),
    });
    await sleep(POST_MS);
    fleet.stopTraffic();
    const trafficMs = Date.now() - t0;
    const left = await fleet.settle(RETRY.deadlineMs + 15_000);
    const failedSync = await fleet.finalSync(20_000);
    const res = await verifyRun(infra.admin, fleet, fault.id, run, trafficMs, seenGaps);
    if (left > 0) res.notes.push({ kind: 'settle', detail: `${left} messages still unresolved after settling` });
    if (failedSync.length) {
      res.unexpected += failedSync.length;
      res.notes.push({ kind: 'final-sync', detail: `no complete final sync on ${failedSync.join(', ')}` });
    }
    log(
      `${fault.id} #${run}: ${res.messages} msgs in ${(trafficMs / 1000).toFixed(1)} s, acked ${res.acknowledged}, failed ${res.failed}, abandoned ${res.abandoned}, ` +
        `lost ${res.lost}, dup ${res.duplicated}, unexpected ${res.unexpected}, in flight ${res.inFlightMin}/${res.inFlightMean}, closes ${res.closes || '-'}`,
    );
    return res;
  } finally {
    fleet.close();
  }
}

async function main(): Promise<number> {
  const selected = ONLY.length ? FAULTS.filter((f) => ONLY.includes(f.id)) : FAULTS;
  if (ONLY.length && selected.length !== ONLY.length) {
    process.stderr.write(`unknown fault id in FAULT_ONLY; known: ${FAULTS.map((f) => f.id).join(', ')}\n`);
    return 2;
  }
  log(`faults ${selected.map((f) => f.id).join(', ')}; ${RUNS} runs each; ${USERS} users × 2 devices; ${INFLIGHT} in flight`);
  const infra = await startInfra(USERS, RECHECK_MS);
  if (!KEEP_LOGS) process.once('exit', () => rmSync(infra.logDir, { recursive: true, force: true }));
  log(`postgres pid ${infra.pg.pid} port ${infra.pg.port}, redis pid ${infra.redis.pid} port ${infra.redis.port}, logs ${infra.logDir}`);
  const results: RunResult[] = [];
  const timings: Timing[] = [];
  const errors = new Map<string, string>();
  const seenGaps = new Set<string>();
  let instances: [Instance, Instance] | undefined;
  let topology: 'pair' | 'cluster' | undefined;
  try {
    for (const fault of selected) {
      try {
        if (topology !== fault.topology) {
          // B is a plain server in both topologies: keep it, replace A.
          const keepB = instances?.[1];
          if (instances) await instances[0].stop('SIGTERM');
          instances = undefined;
          const t = Date.now();
          instances = await startTopology(infra, fault.topology, keepB);
          topology = fault.topology;
          log(`topology ${topology}: A ${instances[0].entry} :${instances[0].port} (pid ${instances[0].proc?.pid}), B ${instances[1].entry} :${instances[1].port} (pid ${instances[1].proc?.pid}) in ${Date.now() - t} ms`);
        }
        for (let run = 1; run <= RUNS; run++) results.push(await oneRun(infra, instances!, fault, run, timings, seenGaps));
      } catch (err) {
        const msg = (err as Error).stack ?? String(err);
        errors.set(fault.id, msg);
        log(`${fault.id}: ERROR ${msg}`);
        // Start from a clean topology for the next fault.
        if (instances) await Promise.all(instances.map((i) => i.stop('SIGKILL').catch(() => false)));
        instances = undefined;
        topology = undefined;
        if (infra.pg.pid === 0) await infra.pg.start().catch(() => undefined);
        if (infra.redis.pid === 0) await infra.redis.start().catch(() => undefined);
      }
    }
  } finally {
    if (instances) await Promise.all(instances.map((i) => i.stop('SIGTERM')));
    await stopInfra(infra);
    if (!KEEP_LOGS) rmSync(infra.logDir, { recursive: true, force: true });
  }
  const order = selected.map((f) => f.id);
  const out: string[] = [];
  out.push('', `Fault suite: ${RUNS} runs per fault, ${USERS} users × 2 devices (one per instance), ${INFLIGHT} messages in flight, ${((Date.now() - started) / 1000).toFixed(0)} s`, '');
  out.push(summaryTable(results, order, errors), '');
  out.push(runTable(results), '');
  out.push(timingTable(timings), '');
  const obs = observations(results);
  if (obs) out.push('Observations (not failures):', obs, '');
  const ev = evidence(results);
  if (ev) out.push('Evidence:', ev, '');
  for (const [f, e] of errors) out.push(`ERROR in ${f}: ${e}`, '');
  const badTimings = timings.filter(timingFailed);
  const bad = results.reduce((a, r) => a + r.lost + r.duplicated + r.unexpected, 0) + errors.size + badTimings.length;
  out.push(bad === 0 ? 'PASS: no loss, no duplicate, nothing unexpected, every bound met' : `FAIL: ${bad} problem(s)${badTimings.length ? ` (${badTimings.length} timing bound(s) missed)` : ''}`);
  if (KEEP_LOGS) out.push(`server logs kept in ${infra.logDir}`);
  process.stdout.write(out.join('\n') + '\n');
  return bad === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`fault suite setup failed: ${(err as Error).stack ?? err}\n`);
    process.exit(2);
  },
);
