/**
 * Development and test data in the auth backend's tables (embedded database, tests,
 * benchmarks). Never used against a configured production database by the server.
 */
import type { Queryable } from './db.ts';

/** A user row to create: `id` decimal string. */
export interface DevUser {
  id: string;
  username: string;
  email?: string;
  firstName?: string | null;
  lastName?: string | null;
}

/** Insert (or update) users and their profiles. Ids are kept as given. */
export async function upsertUsers(db: Queryable, users: readonly DevUser[]): Promise<void> {
  if (users.length === 0) return;
  const ids = users.map((u) => u.id);
  await db.query(
    `INSERT INTO users_auth (user_id, username, email)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
     ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, email = EXCLUDED.email`,
    [ids, users.map((u) => u.username), users.map((u) => u.email ?? `${u.username}@example.com`)],
  );
  await db.query(
    `INSERT INTO user_profile_info (user_id, first_name, last_name)
     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
     ON CONFLICT (user_id) DO UPDATE SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name`,
    [ids, users.map((u) => u.firstName ?? null), users.map((u) => u.lastName ?? null)],
  );
  // Keep the BIGSERIAL ahead of explicit ids so the backend's own inserts still work.
  await db.query(`SELECT setval(pg_get_serial_sequence('users_auth', 'user_id'), GREATEST((SELECT max(user_id) FROM users_auth), 1))`);
}

/** Add follow edges `[follower, followee]`. Existing edges are kept. */
export async function addFollows(db: Queryable, edges: readonly (readonly [string, string])[]): Promise<void> {
  if (edges.length === 0) return;
  await db.query(
    `INSERT INTO user_follows (follower_id, followee_id) SELECT * FROM unnest($1::bigint[], $2::bigint[]) ON CONFLICT DO NOTHING`,
    [edges.map((e) => e[0]), edges.map((e) => e[1])],
  );
}

/** Remove follow edges `[follower, followee]`. */
export async function removeFollows(db: Queryable, edges: readonly (readonly [string, string])[]): Promise<void> {
  for (const [a, b] of edges) await db.query('DELETE FROM user_follows WHERE follower_id = $1 AND followee_id = $2', [a, b]);
}

/** Add a block `blocker` → `blocked`. */
export async function addBlock(db: Queryable, blocker: string, blocked: string): Promise<void> {
  await db.query('INSERT INTO blocked_relationships (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [blocker, blocked]);
}

/** Remove a block `blocker` → `blocked`. */
export async function removeBlock(db: Queryable, blocker: string, blocked: string): Promise<void> {
  await db.query('DELETE FROM blocked_relationships WHERE blocker_id = $1 AND blocked_id = $2', [blocker, blocked]);
}

/** Revoke a token id (as the backend does on logout). */
export async function revokeJti(db: Queryable, jti: string): Promise<void> {
  await db.query('INSERT INTO jwt_revocation (jti) VALUES ($1) ON CONFLICT DO NOTHING', [jti]);
}

/** Delete a user (as the backend does). */
export async function deleteUser(db: Queryable, userId: string): Promise<void> {
  await db.query('DELETE FROM users_auth WHERE user_id = $1', [userId]);
}

/**
 * The demo data of a first embedded start: alice (1), bob (2), carol (3); alice and bob
 * follow each other, carol follows alice. Idempotent.
 */
export async function seedDemo(db: Queryable): Promise<void> {
  await upsertUsers(db, [
    { id: '1', username: 'alice', firstName: 'Alice', lastName: 'Smith' },
    { id: '2', username: 'bob', firstName: 'Bob', lastName: 'Jones' },
    { id: '3', username: 'carol', firstName: 'Carol', lastName: 'White' },
  ]);
  await addFollows(db, [
    ['1', '2'],
    ['2', '1'],
    ['3', '1'],
  ]);
}

/** Read every column of every row of a chat table (tests: the plaintext canary scan). */
export async function dumpTable(db: Queryable, table: string): Promise<Record<string, unknown>[]> {
  if (!/^[a-z_]+$/.test(table)) throw new Error('bad table name');
  return (await db.query(`SELECT * FROM ${table}`)).rows;
}

/** Names of the tables in the current schema (tests: scan every chat table). */
export async function listTables(db: Queryable): Promise<string[]> {
  const r = await db.query<{ t: string }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`);
  return r.rows.map((x) => x.t);
}
