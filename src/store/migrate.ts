/**
 * Ordered SQL migrations from `sql/NNN_name.sql`, applied at start inside one
 * transaction under a transaction-scoped advisory lock (so concurrent starts of several
 * processes apply each file exactly once), recorded in `chat_migrations`.
 * Never touches the auth backend's tables (those are in `sql/dev/`, applied only by
 * {@link applyDevSchema}).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.ts';

/** Absolute path of the repo's `sql/` folder. */
export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));
/** Advisory lock key for migrations ('chat' in ASCII). */
const MIGRATION_LOCK = 0x63686174;

/** A migration file: `version` is its numeric prefix. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The migration files in order. Throws if two files share a version. */
export function listMigrations(dir = SQL_DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = /^(\d+)_.+\.sql$/.exec(file);
    if (!m) continue;
    out.push({ version: Number(m[1]), name: file, sql: readFileSync(dir + file, 'utf8') });
  }
  const seen = new Set<number>();
  for (const m of out) {
    if (seen.has(m.version)) throw new Error(`duplicate migration version ${m.version}`);
    seen.add(m.version);
  }
  return out;
}

/**
 * Apply pending migrations. Resolves to the names applied (empty when up to date).
 * Throws the failing statement's error; nothing of a failed run is kept.
 */
export async function migrate(db: Db): Promise<string[]> {
  const migrations = listMigrations();
  return db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.query(`CREATE TABLE IF NOT EXISTS chat_migrations (
      version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
    const { rows } = await tx.query<{ version: number }>('SELECT version FROM chat_migrations');
    const done = new Set(rows.map((r) => Number(r.version)));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      // Simple-protocol multi-statement text: no parameters in migration files.
      for (const stmt of splitStatements(m.sql)) await tx.query(stmt);
      await tx.query('INSERT INTO chat_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.name);
    }
    return applied;
  });
}

/**
 * Split a SQL file into statements on `;` at line ends, outside `$$` bodies.
 * Our migration files keep to that form (no `;` inside string literals at line ends).
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inDollar = false;
  for (const line of sql.split('\n')) {
    const trimmed = line.replace(/--.*$/, '');
    if ((trimmed.match(/\$\$/g)?.length ?? 0) % 2 === 1) inDollar = !inDollar;
    cur += line + '\n';
    if (!inDollar && /;\s*$/.test(trimmed)) {
      if (cur.replace(/--.*$/gm, '').trim()) out.push(cur.trim());
      cur = '';
    }
  }
  if (cur.replace(/--.*$/gm, '').trim()) out.push(cur.trim());
  return out;
}

/**
 * Create the auth backend's tables (development only: embedded database,
 * `npm run db:dev-schema`, tests). Idempotent.
 */
export async function applyDevSchema(db: Db): Promise<void> {
  const sql = readFileSync(SQL_DIR + 'dev/backend_schema.sql', 'utf8');
  for (const stmt of splitStatements(sql)) await db.query(stmt);
}
