/**
 * The database seam: one small interface, two adapters (`pg` Pool and embedded PGlite).
 * Repositories in this folder are the only code that writes SQL.
 */

/** One result: `rows` as plain objects keyed by column name; `rowCount` rows affected/returned. */
export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

/** Something that runs parameterised SQL (`$1`, `$2`, …): a pool, or one transaction. */
export interface Queryable {
  /**
   * Run one statement. `params` are sent as parameters, never interpolated.
   * Throws {@link DbUnavailableError} when the database cannot be reached, or the
   * driver's error (with a SQLSTATE `code`) when the statement fails.
   */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<QueryResult<T>>;
}

/** Per-statement options of {@link Queryable.query}. */
export interface QueryOptions {
  /**
   * Run as a named prepared statement on PostgreSQL (parsed once per connection; after a
   * few runs PostgreSQL may switch to a generic plan). For small hot lookups on the
   * connect path; not for the message inserts, whose generic plan measured slower
   * (ack p50 4 -> 8 ms at 2,000 DM/s; forced generic: PostgreSQL at ~120% of a core
   * instead of ~78%). Ignored on PGlite and with DB_PREPARED_STATEMENTS=false.
   */
  prepare?: boolean;
}

/** A database: queries, transactions, a health probe and shutdown. */
export interface Db extends Queryable {
  /** `'pg'` for PostgreSQL through a pool, `'pglite'` for the embedded database. */
  readonly kind: 'pg' | 'pglite';
  /**
   * Run `fn` inside BEGIN … COMMIT on one connection; ROLLBACK (and rethrow) if it throws.
   * Resolves to what `fn` resolves to.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** `SELECT 1` bounded by `timeoutMs`; resolves true when it answered in time. Never throws. */
  ping(timeoutMs: number): Promise<boolean>;
  /** Close every connection. */
  close(): Promise<void>;
}

/**
 * The database could not be reached (connect refused or timed out, pool wait exceeded,
 * connection lost). Callers map it to `SERVICE_UNAVAILABLE` (PROTOCOL §2.2) or
 * `AUTH_UNAVAILABLE` (§3). Usually nothing was changed; when the connection died after
 * a COMMIT reached the server but before its answer did, the change was made and the
 * caller cannot know: a send retried with the same clientMessageId then resolves as a
 * duplicate with the original ack (see docs/PROTOCOL-NOTES.md).
 */
export class DbUnavailableError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'DbUnavailableError';
  }
}

/** SQLSTATE of an error thrown by a query, or undefined. 23505 = unique_violation. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Bytea as a Buffer, whichever driver returned it (pg: Buffer, PGlite: Uint8Array). */
export function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError('expected bytea');
}
