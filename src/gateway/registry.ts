/**
 * This process's authenticated connections by user: the end of the fan-out path. A
 * delivery's frame (serialised once) is written to every open connection of its users.
 */
import type { Delivery } from '../fanout/bus.ts';

/** What the registry needs of a connection. */
export interface Deliverable {
  readonly id: string;
  /** Write a serialised frame (text; a Buffer holds its UTF-8 bytes). */
  sendRaw(frame: string | Buffer): void;
  close(code: number, reason: string): void;
}

/** userId → connections. */
export class ConnectionRegistry<C extends Deliverable = Deliverable> {
  private readonly byUser = new Map<string, Set<C>>();
  private count = 0;

  /** Register `conn` for `userId`. Resolves true when it is this process's first connection of that user. */
  add(userId: string, conn: C): boolean {
    let set = this.byUser.get(userId);
    const first = !set;
    if (!set) this.byUser.set(userId, (set = new Set()));
    if (!set.has(conn)) {
      set.add(conn);
      this.count++;
    }
    return first;
  }

  /** Unregister. Resolves true when the user has no connection left on this process. */
  remove(userId: string, conn: C): boolean {
    const set = this.byUser.get(userId);
    if (!set || !set.delete(conn)) return false;
    this.count--;
    if (set.size > 0) return false;
    this.byUser.delete(userId);
    return true;
  }

  /** Connections of `userId` here (empty when none). */
  of(userId: string): ReadonlySet<C> {
    return this.byUser.get(userId) ?? EMPTY;
  }

  /**
   * Write a delivery to every matching local connection; then close them if asked.
   * The frame is encoded to UTF-8 once and the same bytes go to every connection.
   * Resolves frames written.
   */
  deliver(d: Delivery): number {
    let n = 0;
    let data: Buffer | undefined;
    for (const userId of d.userIds) {
      const set = this.byUser.get(userId);
      if (!set) continue;
      for (const conn of set) {
        if (conn.id === d.exceptConnId) continue;
        if (d.frame) {
          data ??= Buffer.from(d.frame, 'utf8');
          conn.sendRaw(data);
          n++;
        }
        if (d.close) conn.close(d.close.code, d.close.reason);
      }
    }
    return n;
  }

  /** Authenticated connections here. */
  size(): number {
    return this.count;
  }

  /** Distinct users here. */
  users(): number {
    return this.byUser.size;
  }

  /** Every connection (for re-checks and drain). */
  *all(): IterableIterator<C> {
    for (const set of this.byUser.values()) yield* set;
  }
}

const EMPTY: ReadonlySet<never> = new Set();
