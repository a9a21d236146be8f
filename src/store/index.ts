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

/** Build every repository over `db`. */
export function createStores(db: Db): Stores {
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
    messages: new MessageStore(db, db.kind === 'pg' ? { maxInFlight: 4, maxBatch: 256 } : undefined),
    history: new HistoryStore(db),
    reactions: new ReactionStore(db),
    status: new StatusStore(db, db.kind === 'pg' ? { maxInFlight: 1, maxBatch: 1000, minIntervalMs: 20 } : undefined),
    sync: new SyncStore(db),
    groups: new GroupStore(db),
    pins: new PinStore(db),
  };
}
