/**
 * `npm test`: runs the vitest suite against real PostgreSQL and Redis when they are
 * reachable (TEST_DATABASE_URL / TEST_REDIS_URL, or the local defaults 127.0.0.1:5432 and
 * :6379), otherwise on embedded PGlite, printing loudly which suites are skipped and why.
 * Ends with a plain "N passed, N failed, N skipped" line. Extra arguments go to vitest.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { chromiumPath } from './lib/chromium.ts';

const DEFAULT_PG = 'postgres://postgres@127.0.0.1:5432/test';
const DEFAULT_REDIS = 'redis://127.0.0.1:6379';

/** Resolve true when a TCP connection to host:port opens within `ms`. */
function reachable(url: string, defPort: number, ms = 1000): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect({ host: u.hostname || '127.0.0.1', port: Number(u.port || defPort) });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(ms, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function banner(lines: string[]): void {
  const bar = '!'.repeat(78);
  process.stdout.write(`\n${bar}\n${lines.map((l) => `!! ${l}`).join('\n')}\n${bar}\n\n`);
}

const env = { ...process.env };
const pgUrl = env.TEST_DATABASE_URL || DEFAULT_PG;
const redisUrl = env.TEST_REDIS_URL || DEFAULT_REDIS;
const notes: string[] = [];
if (await reachable(pgUrl, 5432)) env.TEST_DATABASE_URL = pgUrl;
else {
  delete env.TEST_DATABASE_URL;
  notes.push(`NO POSTGRESQL at ${new URL(pgUrl).host}: integration tests run on embedded PGlite.`, 'SKIPPED: database outage tests, scale-out tests, the client SDK drain and outage tests (need a real PostgreSQL shared by processes).');
}
if (await reachable(redisUrl, 6379)) env.TEST_REDIS_URL = redisUrl;
else {
  delete env.TEST_REDIS_URL;
  notes.push(`NO REDIS at ${new URL(redisUrl).host}: SKIPPED the Redis fan-out, presence and limit tests.`);
}
if (!chromiumPath(env)) {
  notes.push('NO CHROMIUM (apt-get install chromium, or set CHROMIUM_PATH): SKIPPED the client SDK browser test.');
}
if (notes.length) banner(notes);
else process.stdout.write(`tests run on PostgreSQL (${new URL(pgUrl).host}) and Redis (${new URL(redisUrl).host})\n`);

mkdirSync('.tmp', { recursive: true });
const report = '.tmp/vitest-report.json';
const child = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)], {
  env,
  stdio: 'inherit',
});
const code: number = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
if (existsSync(report)) {
  const r = JSON.parse(readFileSync(report, 'utf8')) as { numPassedTests: number; numFailedTests: number; numPendingTests: number; numTodoTests: number };
  const skipped = r.numPendingTests + r.numTodoTests;
  if (notes.length && skipped) banner([`${skipped} tests were SKIPPED (see above for why).`]);
  process.stdout.write(`\n${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped\n`);
}
process.exit(code);
