/**
 * The message-level checks of what RedisBus receives (DESIGN "Cross-process delivery";
 * docs/scaling.md "Sealed frames on Redis"), before its per-channel recipient checks: own
 * echoes dropped unparsed, the wire form decoded and sealed frames opened (./wire.ts), and a
 * sealed frame's counter checked against the last one seen from its origin (a lower one is
 * a replay). Decoded once per string: a DM is published as one wire string to two per-user
 * channels, and an instance holding both users receives it twice in a row (one PUBLISH
 * script, one connection, so consecutively and in the same turn); the second copy reuses
 * the first's decoding (~10 µs of JSON parse and AES-GCM open, docs/scaling.md).
 */
import type { BusRefusal } from './refusals.ts';
import { decodeWire, SEALED_MAX_AGE_MS, type Decoded, type OpenOptions } from './wire.ts';

/** Origins remembered before those silent for 2 × SEALED_MAX_AGE_MS are swept. */
const MAX_ORIGINS = 256;

/** Decodes received bus messages once each and checks their origin and order. */
export class BusReader {
  /** Starts of the wire headers of this instance's own publishes (plaintext, sealed). */
  private readonly echoPrefixes: readonly string[];
  /**
   * Highest seal counter received per origin instance, when (epoch ms), and the channels it
   * arrived on: a lower counter, or the same one again on a channel it already came on, is
   * a replay (one publish reaches an instance once per channel: a DM's two user channels).
   */
  private readonly counters = new Map<string, { n: number; at: number; channels: string[] }>();
  /** The last message accepted this turn and its decoding (see {@link read}). */
  private lastMessage: string | undefined;
  private lastDecoded: Decoded | undefined;
  private forgetScheduled = false;
  /** Messages decoded (parsed, and opened when sealed), own echoes excluded. */
  decodes = 0;

  /**
   * @param instanceId this process's instance id (its echoes are dropped)
   * @param openOpts keys that open sealed frames, and whether plaintext is accepted (./wire.ts)
   */
  constructor(
    private readonly instanceId: string,
    private readonly openOpts: OpenOptions,
  ) {
    this.echoPrefixes = [`{"o":${JSON.stringify(instanceId)}`, `{"so":${JSON.stringify(instanceId)}`];
  }

  /**
   * Judge one received message. The same string as the last one accepted in this turn is
   * not decoded again (same origin and counter), only checked to arrive on a channel it
   * has not come on yet. A copy arriving in a later turn (or after any other message) is
   * decoded and judged again: stale or replayed as any other; an equal counter passes
   * only on a new channel.
   * @param message the message as received from Redis
   * @param channel the channel it arrived on
   * @returns the decoding, shared with the next copies of the string: callers must not
   *   mutate it (deliver copies); undefined for this instance's own echoes; or why it is
   *   refused (./refusals.ts: anything but `redirected`, which depends on the channel)
   */
  read(message: string, channel: string): Decoded | Exclude<BusRefusal, 'redirected'> | undefined {
    // Own echoes are dropped before anything is parsed or opened (the header starts with
    // the origin: ./wire.ts); a forged origin gains nothing, the message is then dropped.
    for (const p of this.echoPrefixes) if (message.startsWith(p) && (message[p.length] === ',' || message[p.length] === '}')) return undefined;
    if (message === this.lastMessage) {
      const dec = this.lastDecoded!;
      if (dec.counter !== undefined && !this.inOrder(dec.origin, dec.counter, channel)) return 'replayed';
      return dec;
    }
    this.decodes++;
    const dec = decodeWire(message, this.openOpts);
    if (typeof dec === 'string') return dec;
    if (dec.origin === this.instanceId) return undefined;
    if (dec.counter !== undefined && !this.inOrder(dec.origin, dec.counter, channel)) return 'replayed';
    this.remember(message, dec);
    return dec;
  }

  /**
   * Whether a sealed message's counter does not go back for its origin, and is not the
   * last one again on a channel it already arrived on (one publish to several channels
   * arrives with one counter, once per channel; Redis delivers one connection's publishes
   * in order), and note it. Origins silent for twice the sealed-message lifetime are
   * forgotten (a new process has a new id).
   */
  private inOrder(origin: string, n: number, channel: string): boolean {
    const now = Date.now();
    const seen = this.counters.get(origin);
    if (seen && n < seen.n) return false;
    if (seen && n === seen.n) {
      if (seen.channels.includes(channel)) return false;
      seen.channels.push(channel);
      seen.at = now;
      return true;
    }
    this.counters.set(origin, { n, at: now, channels: [channel] });
    if (this.counters.size > MAX_ORIGINS) for (const [o, v] of this.counters) if (now - v.at > 2 * SEALED_MAX_AGE_MS) this.counters.delete(o);
    return true;
  }

  /** Keep `message` and its decoding until the end of this turn (one entry: no large message held longer). */
  private remember(message: string, dec: Decoded): void {
    this.lastMessage = message;
    this.lastDecoded = dec;
    if (this.forgetScheduled) return;
    this.forgetScheduled = true;
    setImmediate(this.forget);
  }

  private readonly forget = (): void => {
    this.forgetScheduled = false;
    this.lastMessage = undefined;
    this.lastDecoded = undefined;
  };
}
