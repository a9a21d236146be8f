/**
 * This process's authenticated connections by user: the end of the fan-out path. A
 * delivery's frame (serialised once) is written to every open connection of its users.
 */
import type { Delivery } from '../fanout/bus.ts';
import { encodeTextFrame } from './wsFrame.ts';

/** What the registry needs of a connection. */
export interface Deliverable {
  readonly id: string;
  /** Write a serialised frame (text; a Buffer holds its UTF-8 bytes). */
  sendRaw(frame: string | Buffer): void;
  /** Write a fan-out frame: the complete WebSocket frame of `payload`, shared by all recipients. */
  sendPrepared?(wsFrame: Buffer, payload: Buffer): void;
  close(code: number, reason: string): void;
}

/**
 * userId → connections. A user's connections are a small array (at most
 * MAX_CONNECTIONS_PER_USER): about 100 bytes less per user than a Set.
 */
export class ConnectionRegistry<C extends Deliverable = Deliverable> {
  private readonly byUser = new Map<string, C[]>();
  private count = 0;

  /**
   * @param opts.prepareFrames frame each delivery once and write it to every connection
   *   with `sendPrepared` (not with permessage-deflate: compressed frames differ per socket)
   * @param opts.onFramesOut told once per delivery: its payload and how many connections it was written to (metrics)
   */
  constructor(private readonly opts: { prepareFrames?: boolean; onFramesOut?: (payload: Buffer, n: number) => void } = {}) {}

  /** Register `conn` for `userId`. Resolves true when it is this process's first connection of that user. */
  add(userId: string, conn: C): boolean {
    const list = this.byUser.get(userId);
    if (!list) {
      this.byUser.set(userId, [conn]);
      this.count++;
      return true;
    }
    if (!list.includes(conn)) {
      list.push(conn);
      this.count++;
    }
    return false;
  }

  /** Unregister. Resolves true when the user has no connection left on this process. */
  remove(userId: string, conn: C): boolean {
    const list = this.byUser.get(userId);
    const i = list ? list.indexOf(conn) : -1;
    if (i < 0) return false;
    list!.splice(i, 1);
    this.count--;
    if (list!.length > 0) return false;
    this.byUser.delete(userId);
    return true;
  }

  /** Connections of `userId` here (empty when none). */
  of(userId: string): readonly C[] {
    return this.byUser.get(userId) ?? EMPTY;
  }

  /**
   * Write a delivery to every matching local connection; then close them if asked.
   * The frame is encoded to UTF-8 (and, with `prepareFrames`, framed per RFC 6455) once,
   * and the same bytes go to every connection. Resolves frames written.
   */
  deliver(d: Delivery): number {
    const prepare = this.opts.prepareFrames;
    let n = 0;
    let data: Buffer | undefined;
    let wsFrame: Buffer | undefined;
    for (const userId of d.userIds) {
      const list = this.byUser.get(userId);
      if (!list) continue;
      // A copy when closing: close handlers may remove connections from the list.
      for (const conn of d.close ? [...list] : list) {
        if (conn.id === d.exceptConnId) continue;
        if (d.frame) {
          data ??= Buffer.from(d.frame, 'utf8');
          if (prepare && conn.sendPrepared) conn.sendPrepared((wsFrame ??= encodeTextFrame(data)), data);
          else conn.sendRaw(data);
          n++;
        }
        if (d.close) closeSpread(conn, d.close);
      }
    }
    if (n > 0 && data) this.opts.onFramesOut?.(data, n);
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
    for (const list of this.byUser.values()) yield* list;
  }
}

const EMPTY: readonly never[] = [];

/** Close `conn` now, or at a random time within `close.spreadMs` ms (unless closed by then). */
function closeSpread(conn: Deliverable, close: NonNullable<Delivery['close']>): void {
  const { code, reason, spreadMs } = close;
  if (!spreadMs) return conn.close(code, reason);
  setTimeout(() => conn.close(code, reason), Math.floor(Math.random() * spreadMs)).unref();
}
