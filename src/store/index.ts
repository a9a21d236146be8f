/** All repositories over one {@link Db}: the chat layer's only door to the database. */
import type { Db } from './db.ts';
import { GroupStore } from './groups.ts';
import { HistoryStore } from './history.ts';
import { MessageStore } from './messages.ts';
import { PinStore } from './pins.ts';
import { ReactionStore } from './reactions.ts';
import { RelationStore } from './relations.ts';
import { StatusStore } from './status.ts';
import { SyncStore } from './sync.ts';
import { UserStore } from './users.ts';

/** The repositories, built once by the composition root. */
export interface Stores {
  db: Db;
  users: UserStore;
  relations: RelationStore;
  messages: MessageStore;
  history: HistoryStore;
  reactions: ReactionStore;
  status: StatusStore;
  sync: SyncStore;
  groups: GroupStore;
  pins: PinStore;
}

/** Message-insert statements in flight at once in one process, by default (coalesce.ts). */
export const DEFAULT_INSERT_CONCURRENCY = 4;

/**
 * How many message-insert batches one process keeps in flight (the group commit's
 * `maxInFlight`): `configured` (DB_INSERT_CONCURRENCY) when > 0; else
 * {@link DEFAULT_INSERT_CONCURRENCY} for a lone process, and for a cluster worker that
 * number shared out over `workers` (rounded, at least 1), so the host's PostgreSQL sees
 * about the same concurrency either way. Why: with 4 per worker, 2 workers on this
 * 2-core machine ran 8 concurrent inserts; more backends competed for the CPUs and each
 * batch held fewer rows. Cluster bench (2,000 DM/s, 2 workers + Redis, 2026-12-04): ack
 * p99 60.6 and 49.3 ms at 4 per worker against 42.4, 27.3, 32.0 and 27.7 ms at 2.
 * @param configured DB_INSERT_CONCURRENCY (0 = automatic)
 * @param worker true under cluster-server.ts
 * @param workers CLUSTER_WORKERS
 * @returns statements, ≥ 1
 */
export function insertConcurrency(configured: number, worker: boolean, workers: number): number {
  if (configured > 0) return configured;
  if (!worker) return DEFAULT_INSERT_CONCURRENCY;
  return Math.max(1, Math.round(DEFAULT_INSERT_CONCURRENCY / Math.max(1, workers)));
}

/**
 * Build every repository over `db`.
 * @param insertInFlight message-insert batches in flight at once (see {@link insertConcurrency})
 */
export function createStores(db: Db, insertInFlight = DEFAULT_INSERT_CONCURRENCY): Stores {
  return {
    db,
    // Batch tuning (coalesce.ts). Authentication and presence lookups may wait a few ms under
    // load to share a statement; message inserts never wait (acks are latency-bound). Each
    // statement costs the server a round trip of its own (write, wake-up, parse): in a
    // connect storm of ~2,000/s, spacing auth lookups 10 ms apart instead of 2 (and presence
    // contacts 20 instead of 5) took ~700 statements/s to ~200 and the server's CPU for
    // 10,000 connect+auth down by about a fifth (bench connect, alternating runs, 2026-12-04;
    // SYSTEM_DESIGN "Group commit and batched lookups"). A lone request still runs at once (coalesce.ts).
    users: new UserStore(db, db.kind === 'pg' ? { maxInFlight: 4, maxBatch: 500, minIntervalMs: 10 } : undefined),
    relations: new RelationStore(db, db.kind === 'pg' ? { maxInFlight: 2, maxBatch: 500, minIntervalMs: 20 } : undefined),
    messages: new MessageStore(db, db.kind === 'pg' ? { maxInFlight: insertInFlight, maxBatch: 256 } : undefined),
    history: new HistoryStore(db),
    reactions: new ReactionStore(db),
    status: new StatusStore(db, db.kind === 'pg' ? { maxInFlight: 1, maxBatch: 1000, minIntervalMs: 20 } : undefined),
    sync: new SyncStore(db),
    groups: new GroupStore(db),
    pins: new PinStore(db),
  };
}
