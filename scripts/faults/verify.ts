/**
 * The verdict of one fault run, from the clients' ledger and the database:
 * - every ACKNOWLEDGED message is in `private_messages` exactly once (by sender and
 *   clientMessageId), under the id of its ack, and every device of its recipient received
 *   it (after de-duplication by messageId) — else it is lost or duplicated — and that
 *   device's sync stream returned it too (each device syncs from its first cursor on, so
 *   sync alone must miss nothing, PROTOCOL §9) — else it is unexpected;
 * - a message whose every attempt was answered with an error (reported failed to its
 *   sender) was neither stored nor delivered — else it is unexpected;
 * - nothing the run did not send is stored under its prefix, nothing stays unresolved,
 *   and each conversation's seq stays gap-free and matches its counter;
 * - every anomaly noted on the wire counts as unexpected.
 */
import type { Queryable } from '../../src/store/db.ts';
import type { Fleet } from './fleet.ts';
import type { Note } from './ledger.ts';

/** Counts of one run (one row of the report before aggregation). */
export interface RunResult {
  fault: string;
  run: number;
  messages: number;
  acknowledged: number;
  /** Every attempt answered with an error; must not be stored. */
  failed: number;
  /** Given up with an attempt of unknown outcome (connection lost): may or may not be stored. */
  abandoned: number;
  lost: number;
  duplicated: number;
  unexpected: number;
  /** Acks with duplicate:true after an error reply, with no ambiguous attempt before (see Ledger). */
  errorThenStored: number;
  retried: number;
  live: number;
  viaSync: number;
  inFlightMin: number;
  inFlightMean: number;
  trafficMs: number;
  closes: string;
  notes: Note[];
  /** Worth knowing, not failures (e.g. an error reply for an attempt that had in fact been stored). */
  observations: string[];
}

interface Row {
  cmid: string;
  id: string;
  sender: string;
  recipient: string;
}

/**
 * Compare the ledger of `fleet` with the database; resolves the run's counts and the
 * evidence. `seenGaps`: seq anomalies already reported by earlier runs (not counted again).
 */
export async function verifyRun(db: Queryable, fleet: Fleet, fault: string, run: number, trafficMs: number, seenGaps: Set<string>): Promise<RunResult> {
  const ledger = fleet.ledger;
  const notes: Note[] = [...ledger.notes];
  const note = (kind: string, detail: string) => {
    if (notes.length < 400) notes.push({ kind, detail });
  };
  const { rows } = await db.query<Row>(
    `SELECT client_message_id AS cmid, id::text AS id, sender_id::text AS sender, recipient_id::text AS recipient
     FROM private_messages WHERE client_message_id LIKE $1`,
    [ledger.prefix.replace(/[%_\\]/g, '\\$&') + '%'],
  );
  const byCmid = new Map<string, Row[]>();
  for (const r of rows) {
    const list = byCmid.get(r.cmid) ?? [];
    list.push(r);
    byCmid.set(r.cmid, list);
  }
  const res: RunResult = {
    fault,
    run,
    messages: ledger.msgs.size,
    acknowledged: 0,
    failed: 0,
    abandoned: 0,
    lost: 0,
    duplicated: 0,
    unexpected: 0,
    errorThenStored: 0,
    retried: 0,
    live: 0,
    viaSync: 0,
    inFlightMin: 0,
    inFlightMean: 0,
    trafficMs,
    closes: [...ledger.closes].map(([c, n]) => `${c}×${n}`).join(' '),
    notes,
    observations: [],
  };
  for (const m of ledger.msgs.values()) {
    const stored = byCmid.get(m.cmid) ?? [];
    byCmid.delete(m.cmid);
    res.live += m.live;
    res.viaSync += m.viaSync;
    if (m.attempts > 1) res.retried++;
    if (m.errorThenStored) {
      res.errorThenStored++;
      if (res.observations.length < 10) {
        res.observations.push(`${m.cmid}: attempts answered ${m.errors.join(', ')}, then attempt ${m.attempts} got duplicate:true (${[...m.ackIds].join('/')}): an error reply for an attempt that had been stored`);
      }
    }
    const devices = [`u${m.recipientId}/d0`, `u${m.recipientId}/d1`];
    if (m.state === 'acked') {
      res.acknowledged++;
      const ackId = [...m.ackIds][0]!;
      let lost = false;
      let dup = false;
      if (stored.length === 0) {
        lost = true;
        note('lost', `${m.cmid} acknowledged as ${ackId} (attempts ${m.attempts}, errors ${m.errors.join(',') || '-'}) is not in the database`);
      } else if (stored.length > 1) {
        dup = true;
        note('duplicated', `${m.cmid} stored ${stored.length} times: ${stored.map((r) => r.id).join(', ')}`);
      } else if (stored[0]!.id !== ackId || m.ackIds.size > 1) {
        dup = true;
        note('ack-id', `${m.cmid} acked as ${[...m.ackIds].join('/')} but stored as ${stored[0]!.id}`);
      } else if (stored[0]!.sender !== m.senderId || stored[0]!.recipient !== m.recipientId) {
        res.unexpected++;
        note('stored-wrong', `${m.cmid} stored with sender ${stored[0]!.sender} recipient ${stored[0]!.recipient}`);
      }
      for (const dev of devices) {
        const got = m.received.get(dev);
        if (!got || got.size === 0) {
          lost = true;
          note('not-delivered', `${m.cmid} (${ackId}) acknowledged but never reached ${dev} (live ${m.live}, sync ${m.viaSync})`);
        } else if (got.size > 1) {
          dup = true;
          note('duplicated', `${dev} received ${m.cmid} under ${got.size} ids: ${[...got].join(', ')}`);
        } else if (!got.has(ackId)) {
          res.unexpected++;
          note('wrong-id', `${dev} received ${m.cmid} as ${[...got][0]} but it was acked as ${ackId}`);
        }
        if (got?.size && !m.syncedBy.has(dev)) {
          res.unexpected++;
          note('sync-skipped', `${m.cmid} (${ackId}) reached ${dev} live but its sync stream (from its first cursor on) never returned it`);
        }
      }
      if (lost) res.lost++;
      if (dup) res.duplicated++;
    } else if (m.state === 'failed') {
      res.failed++;
      const delivered = devices.filter((d) => m.received.get(d)?.size);
      if (stored.length > 0 || delivered.length > 0) {
        res.unexpected++;
        note('failed-but-stored', `${m.cmid}: every attempt answered with an error (${m.errors.join(',')}) yet stored ${stored.length}× / delivered to ${delivered.join(',') || 'none'}`);
      }
    } else if (m.state === 'abandoned') {
      res.abandoned++;
    } else {
      res.unexpected++;
      note('unresolved', `${m.cmid}: no final answer after ${m.attempts} attempts (errors ${m.errors.join(',') || '-'})`);
    }
  }
  for (const [cmid, list] of byCmid) {
    res.unexpected++;
    note('unknown-stored', `${cmid} stored (${list.map((r) => r.id).join(', ')}) but never sent by this run`);
  }
  const gaps = (await seqGaps(db)).filter((g) => !seenGaps.has(g.split(':')[0]!));
  for (const g of gaps) {
    seenGaps.add(g.split(':')[0]!);
    note('seq', g);
  }
  res.unexpected += ledger.notes.length + gaps.length;
  const s = fleet.inFlightStats();
  res.inFlightMin = s.min;
  res.inFlightMean = s.mean;
  return res;
}

/** Conversations whose message seqs are not exactly 1..last_seq (gap, repeat, or counter mismatch). */
export async function seqGaps(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ conversation_id: string; n: string; d: string; lo: string; hi: string; last_seq: string }>(
    `SELECT m.conversation_id, count(*) AS n, count(DISTINCT m.seq) AS d, min(m.seq) AS lo, max(m.seq) AS hi, c.last_seq
     FROM private_messages m JOIN conversations c ON c.conversation_id = m.conversation_id
     GROUP BY m.conversation_id, c.last_seq
     HAVING count(*) <> count(DISTINCT m.seq) OR min(m.seq) <> 1 OR max(m.seq) <> count(*) OR max(m.seq) <> c.last_seq`,
  );
  return rows.map((r) => `${r.conversation_id}: ${r.n} rows, ${r.d} distinct seqs in ${r.lo}..${r.hi}, last_seq ${r.last_seq}`);
}
