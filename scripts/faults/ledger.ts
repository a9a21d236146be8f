/**
 * The book of one fault run: every message the clients created (by clientMessageId), what
 * its sender was told (acknowledged, failed, or given up on with the outcome unknown), and
 * which recipient devices received it (live or via sync, de-duplicated by messageId).
 * Anomalies seen on the wire (wrong content, unknown messages, unexpected close codes,
 * non-retryable errors) are recorded as "unexpected" notes with evidence.
 */

/** Final outcome of a send, as the sending client knows it. */
export type MsgState = 'pending' | 'acked' | 'failed' | 'abandoned';

/** One logical message (one clientMessageId), over all its attempts. */
export interface Msg {
  readonly cmid: string;
  readonly senderId: string;
  /** Key of the device that sends (and retries) it. */
  readonly senderDevice: string;
  readonly recipientId: string;
  readonly content: string;
  readonly createdAt: number;
  state: MsgState;
  /** Attempts sent so far. */
  attempts: number;
  /** Earliest time of the next attempt (epoch ms). */
  notBefore: number;
  /** True once an attempt ended without a reply (connection lost): its outcome is unknown. */
  ambiguous: boolean;
  /** Error codes of attempts answered with an error, in order. */
  errors: string[];
  /** Message ids in acknowledgements (one expected). */
  ackIds: Set<string>;
  /** Acks with `duplicate:true`. */
  duplicateAcks: number;
  /** True when an ack said `duplicate:true` although no earlier attempt was ambiguous (an error reply had in fact stored it). */
  errorThenStored: boolean;
  /** device key → message ids it received for this message. */
  received: Map<string, Set<string>>;
  /** Devices whose sync stream returned it (every recipient device's must: it syncs from its first cursor on). */
  syncedBy: Set<string>;
  /** Receipts that came live (`new_private_message`) and via `sync`. */
  live: number;
  viaSync: number;
}

/** An unexpected observation with its evidence. */
export interface Note {
  kind: string;
  detail: string;
}

/** Messages and observations of one run. */
export class Ledger {
  readonly msgs = new Map<string, Msg>();
  readonly notes: Note[] = [];
  /** Close codes seen by clients (code → count), all of them. */
  readonly closes = new Map<number, number>();
  private seq = 0;
  private unresolvedCount = 0;

  /** @param prefix clientMessageId prefix unique to this run (≤ 20 chars) */
  constructor(readonly prefix: string) {}

  /** Create and register a message from `senderDevice` of `senderId` to `recipientId`. */
  create(senderId: string, senderDevice: string, recipientId: string): Msg {
    const cmid = `${this.prefix}${(++this.seq).toString(36)}`;
    const m: Msg = {
      cmid,
      senderId,
      senderDevice,
      recipientId,
      content: `fault-suite ${cmid} from ${senderId} to ${recipientId}`,
      createdAt: Date.now(),
      state: 'pending',
      attempts: 0,
      notBefore: 0,
      ambiguous: false,
      errors: [],
      ackIds: new Set(),
      duplicateAcks: 0,
      errorThenStored: false,
      received: new Map(),
      syncedBy: new Set(),
      live: 0,
      viaSync: 0,
    };
    this.msgs.set(cmid, m);
    this.unresolvedCount++;
    return m;
  }

  /** Messages not yet acknowledged, failed or abandoned. */
  unresolved(): number {
    return this.unresolvedCount;
  }

  /** Record an unexpected observation (kept to the first 200 of each run). */
  note(kind: string, detail: string): void {
    if (this.notes.length < 200) this.notes.push({ kind, detail });
    else if (this.notes.length === 200) this.notes.push({ kind: 'truncated', detail: 'more notes dropped' });
  }

  /** A `private_message_sent` reply to an attempt of `m`. */
  ack(m: Msg, reply: Record<string, unknown>): void {
    const message = reply.message as Record<string, unknown> | undefined;
    const id = String(reply.messageId ?? message?.id ?? '');
    if (!id) this.note('bad-ack', `${m.cmid}: ack without messageId`);
    if (message && (message.content !== m.content || String(message.recipientId) !== m.recipientId || String(message.senderId) !== m.senderId)) {
      this.note('ack-mismatch', `${m.cmid}: ack message differs from what was sent`);
    }
    if (reply.clientMessageId !== undefined && reply.clientMessageId !== m.cmid) this.note('ack-mismatch', `${m.cmid}: ack clientMessageId ${String(reply.clientMessageId)}`);
    if (reply.duplicate === true) {
      m.duplicateAcks++;
      if (!m.ambiguous) m.errorThenStored = true;
    }
    m.ackIds.add(id);
    if (m.state === 'pending') {
      m.state = 'acked';
      this.unresolvedCount--;
    } else {
      this.note('late-ack', `${m.cmid}: ack after the message was ${m.state}`);
    }
  }

  /** The sender gives up on `m`: `failed` when every attempt was answered with an error, else `abandoned`. */
  giveUp(m: Msg): void {
    if (m.state !== 'pending') return;
    m.state = m.ambiguous ? 'abandoned' : 'failed';
    this.unresolvedCount--;
  }

  /** A `private_message_sent` broadcast or a DM `M` received by `device` of `userId`. */
  received(deviceKey: string, userId: string, msg: Record<string, unknown>, via: 'live' | 'sync'): void {
    const cmid = msg.clientMessageId;
    if (typeof cmid !== 'string' || !cmid.startsWith(this.prefix)) return; // another run's message
    if (String(msg.recipientId) !== userId) return; // the user's own message (sync lists both directions)
    const m = this.msgs.get(cmid);
    if (!m) {
      this.note('unknown-message', `${deviceKey} got ${String(msg.id)} with unknown clientMessageId ${cmid}`);
      return;
    }
    if (msg.content !== m.content || String(msg.senderId) !== m.senderId) this.note('content-mismatch', `${deviceKey} got ${String(msg.id)} for ${cmid} with other content or sender`);
    if (msg.isDeleted === true) this.note('deleted', `${deviceKey}: ${cmid} arrived as deleted`);
    let ids = m.received.get(deviceKey);
    if (!ids) m.received.set(deviceKey, (ids = new Set()));
    ids.add(String(msg.id ?? msg.messageId));
    if (via === 'live') m.live++;
    else {
      m.viaSync++;
      m.syncedBy.add(deviceKey);
    }
  }

  /** Count a close code seen by a client. */
  closeSeen(code: number): void {
    this.closes.set(code, (this.closes.get(code) ?? 0) + 1);
  }
}
