/**
 * Self-check of ./services.ts (no chat server needed): start a private PostgreSQL, write a
 * committed row, crash it (immediate), restart it on the same port and data, check the
 * row survived, stop it fast; start/stop/restart a private Redis. Exits non-zero on failure.
 * Run: `tsx scripts/lib/services-check.ts`.
 */
import { createDatabase, startPostgres, startRedis, withClient } from './services.ts';
import { isAlive } from './proc.ts';

async function query(url: string, sql: string): Promise<unknown[]> {
  return withClient(url, 30_000, async (c) => (await c.query(sql)).rows);
}

function check(cond: unknown, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok  ${what}`);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const pgSvc = await startPostgres();
  console.log(`postgres pid ${pgSvc.pid} port ${pgSvc.port} dir ${pgSvc.dataDir} (${Date.now() - t0} ms)`);
  try {
    const settings = (await query(pgSvc.url, "SELECT name, setting FROM pg_settings WHERE name IN ('fsync','synchronous_commit','listen_addresses')")) as { name: string; setting: string }[];
    const s = Object.fromEntries(settings.map((r) => [r.name, r.setting]));
    check(s.fsync === 'on' && s.synchronous_commit === 'on' && s.listen_addresses === '127.0.0.1', `durable, loopback only ${JSON.stringify(s)}`);
    const dbUrl = await createDatabase(pgSvc.url, 'svc_check');
    await query(dbUrl, 'CREATE TABLE t (v int)');
    await query(dbUrl, 'INSERT INTO t VALUES (42)');
    const oldPid = pgSvc.pid;
    await pgSvc.stop('immediate');
    check(!isAlive(oldPid) && pgSvc.pid === 0, 'immediate stop killed the postmaster');
    const t1 = Date.now();
    await pgSvc.start();
    console.log(`restarted after crash in ${Date.now() - t1} ms, pid ${pgSvc.pid}`);
    const rows = (await query(dbUrl, 'SELECT v FROM t')) as { v: number }[];
    check(rows.length === 1 && rows[0]?.v === 42, 'committed row survived the crash');
    await pgSvc.stop('fast');
    check(pgSvc.pid === 0, 'fast stop');
    await pgSvc.start();
    check(pgSvc.pid > 0, 'restart after fast stop');
  } finally {
    await pgSvc.remove();
  }
  const redis = await startRedis();
  console.log(`redis pid ${redis.pid} port ${redis.port}`);
  const rp = redis.pid;
  await redis.stop();
  check(!isAlive(rp), 'redis stopped');
  await redis.start();
  check(redis.pid > 0 && isAlive(redis.pid), 'redis restarted on the same port');
  await redis.remove();
  console.log(`all ok in ${Date.now() - t0} ms`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
