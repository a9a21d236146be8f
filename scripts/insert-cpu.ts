/**
 * PostgreSQL backend CPU per message insert, by statement form and batch size: the
 * evidence behind store/insertBatch.ts's statement. On one connection (its backend's
 * utime + stime from /proc, 10 ms ticks, so use ≥ 1,000 iterations), for each batch
 * size it runs sequential batches of distinct conversations through:
 * - `batch`: the group-commit statement of store/insertBatch.ts (as the server runs it);
 * - `unnest`: the form used until 2026-12-05 (every column an array, unprepared);
 * - `one`: the prepared single-row insert (MessageStore.insertOne), once per message.
 *
 * Usage (a PostgreSQL on this host: its /proc must show the backend):
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx scripts/insert-cpu.ts [sizes, default 1,2,3,5,8] [iterations, default 1500]
 * Creates and drops its own database `chat_insert_cpu_<hex>`. Prints one line per form,
 * size and round (two rounds, so warm-up effects show): µs of backend CPU per statement
 * and per message, and µs of wall time per statement.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/observability/logger.ts';
import { BATCH_SQL_HEAD, insertBatch } from '../src/store/insertBatch.ts';
import { MessageStore, type NewMessage } from '../src/store/messages.ts';
import { migrate } from '../src/store/migrate.ts';
import { createPgDb } from '../src/store/pgDb.ts';

/** The batch statement before 2026-12-05: one array per column, run unprepared. */
const UNNEST_SQL = `${BATCH_SQL_HEAD}FROM unnest($6::text[], $7::int[], $8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::bytea[],
            $15::uuid[], $16::text[], $17::jsonb[], $18::bool[])
  AS t(conversation_id, back, id, sender_id, recipient_id, group_id, key_id, nonce, ciphertext, reply_to, client_message_id, mentions, is_announcement)
JOIN c ON c.conversation_id = t.conversation_id
RETURNING id::text AS id, seq::text AS seq, created_at`;

const admin = process.env.TEST_DATABASE_URL ?? process.env.BENCH_DATABASE_URL;
if (!admin) {
  console.error('set TEST_DATABASE_URL (or BENCH_DATABASE_URL) to a PostgreSQL admin URL on this host');
  process.exit(2);
}
const sizes = (process.argv[2] ?? '1,2,3,5,8').split(',').map(Number);
const iterations = Number(process.argv[3] ?? 1500);

/** utime + stime of process `pid`, in clock ticks (10 ms). */
function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
}

const name = `chat_insert_cpu_${randomBytes(4).toString('hex')}`;
const adminClient = new pg.Client({ connectionString: admin });
await adminClient.connect();
await adminClient.query(`CREATE DATABASE ${name}`);
const url = new URL(admin);
url.pathname = '/' + name;
const db = createPgDb(
  { connectionString: url.toString(), poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 60_000, preparedStatements: true },
  createLogger('error', { silent: true }),
);
try {
  await migrate(db);
  const store = new MessageStore(db);
  const pid = Number((await db.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p);
  let next = 0;
  const message = (): NewMessage => {
    const i = next++;
    const a = String(1000 + (i % 200));
    const b = String(5000 + (i % 200));
    return {
      id: uuidv7(), conversationId: `d:${a}:${b}`, kind: 'direct', userA: a, userB: b, senderId: a, recipientId: b, groupId: null,
      sealed: { keyId: 'k1', nonce: randomBytes(12), ciphertext: randomBytes(140) }, replyTo: null,
      clientMessageId: 'c' + randomBytes(8).toString('hex'), mentions: null, isAnnouncement: false,
    };
  };
  const batch = insertBatch(db, (m) => store.insertOne(m), async () => null);
  const unnest = (ms: NewMessage[]) =>
    db.query(UNNEST_SQL, [
      ms.map((m) => m.conversationId), ms.map((m) => m.kind), ms.map((m) => m.userA), ms.map((m) => m.userB), ms.map(() => 1),
      ms.map((m) => m.conversationId), ms.map(() => 0), ms.map((m) => m.id), ms.map((m) => m.senderId), ms.map((m) => m.recipientId),
      ms.map((m) => m.groupId), ms.map((m) => m.sealed.keyId), ms.map((m) => m.sealed.nonce), ms.map((m) => m.sealed.ciphertext),
      ms.map((m) => m.replyTo), ms.map((m) => m.clientMessageId), ms.map(() => null), ms.map((m) => m.isAnnouncement),
    ]);
  const one = async (ms: NewMessage[]) => {
    for (const m of ms) await store.insertOne(m);
  };
  const forms: [string, (ms: NewMessage[]) => Promise<unknown>][] = [['batch', batch], ['unnest', unnest], ['one', one]];
  for (const n of sizes) {
    for (const round of [1, 2]) {
      for (const [form, run] of forms) {
        if (n === 1 && form !== 'one') continue; // a batch of one runs `one` (insertBatch.ts)
        for (let i = 0; i < 50; i++) await run(Array.from({ length: n }, message));
        const t0 = cpuTicks(pid);
        const w0 = performance.now();
        for (let i = 0; i < iterations; i++) await run(Array.from({ length: n }, message));
        const cpuUs = ((cpuTicks(pid) - t0) * 10_000) / iterations;
        const wallUs = ((performance.now() - w0) * 1000) / iterations;
        console.log(`rows ${n} ${form.padEnd(6)} round ${round}: backend CPU ${cpuUs.toFixed(0)} µs/statement, ${(cpuUs / n).toFixed(0)} µs/message; wall ${wallUs.toFixed(0)} µs/statement`);
      }
    }
  }
} finally {
  await db.close();
  await adminClient.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await adminClient.end();
}
