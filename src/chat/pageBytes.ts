/**
 * Byte budget of the replies that carry a page of messages: `sync_result` (PROTOCOL §9),
 * `private_message_history` and `conversation_started` (§6), `group_messages` (§7).
 *
 * A page is limited in rows (100 history messages, 50 for start_conversation, 500 sync
 * entries), but a row's size on the wire varies a lot: JSON escapes each control character
 * of `content` (U+0000–U+001F, stored exactly as sent, §2) as 6 bytes (`\u0001`), so one
 * 5,000-code-point message is ~30 KB and a 100-row history page 3 MB (audit 7, F5). A
 * reply past SEND_QUEUE_LIMIT_BYTES makes the connection hold that much (§2.3), so a page
 * ends once its rendered entries pass half of it, and the rest follows on the next page.
 * Sizes are measured, not guessed: each entry is serialized as the gateway will serialize
 * it (JSON.stringify) and its UTF-8 bytes counted.
 */
import type { ChatSettings } from './context.ts';

/**
 * The bytes the entries of one page may take, together: half of SEND_QUEUE_LIMIT_BYTES
 * (§2.3), leaving the other half for the reply's other fields and for the live events
 * queued on the connection with it (audit 7, F5; the rule sync already followed).
 * @param settings the chat settings (`sendQueueLimitBytes`, bytes)
 * @returns bytes
 */
export function pageBudgetBytes(settings: Pick<ChatSettings, 'sendQueueLimitBytes'>): number {
  return Math.floor(settings.sendQueueLimitBytes / 2);
}

/**
 * The bytes `value` takes in a JSON frame: the UTF-8 length of `JSON.stringify(value)`,
 * exact, escapes included (a control character is 6 bytes, `"` and `\` are 2, a non-ASCII
 * character its 2–4 UTF-8 bytes; RFC 8259 §7).
 * @returns bytes (0 for a value JSON leaves out, such as undefined)
 */
export function jsonBytes(value: unknown): number {
  const s = JSON.stringify(value);
  return s === undefined ? 0 : Buffer.byteLength(s, 'utf8');
}

/** A string JSON writes as itself: printable ASCII without `"` and `\` (RFC 8259 §7); anything else may escape. */
const MAY_ESCAPE = /[\u0000-\u001f"\\\u007f-\uffff]/;

/**
 * An upper bound of {@link jsonBytes}, bytes, cheap (a walk of the value, no serialization:
 * about 0.55 µs per message view against 1.2 µs to serialize and count it, .tmp/f5): a string of printable
 * ASCII without `"` or `\` counts its length, any other string 6 bytes per UTF-16 unit (the
 * longest escape, `\u0001`, and more than any character's UTF-8 bytes); a number 24 bytes
 * (the longest a double prints), booleans and null 5. A value with `toJSON` (a Date) is
 * measured exactly. Close to the real size for ordinary ASCII messages (45 KB for 42 KB),
 * never below it.
 */
export function jsonBytesAtMost(value: unknown): number {
  if (typeof value === 'string') return value.length + 2 + (MAY_ESCAPE.test(value) ? 5 * value.length : 0);
  if (typeof value === 'number') return 24;
  if (value === null || value === undefined || typeof value === 'boolean') return 5;
  if (typeof value !== 'object') return jsonBytes(value);
  if (Array.isArray(value)) {
    let n = 2;
    for (let i = 0; i < value.length; i++) n += jsonBytesAtMost(value[i]) + 1;
    return n;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return jsonBytes(value);
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o);
  let n = 2;
  for (let i = 0; i < keys.length; i++) n += keyBytesAtMost(keys[i]!) + 2 + jsonBytesAtMost(o[keys[i]!]);
  return n;
}

/** Bounds of the object keys seen (replies use a few dozen fixed names): the regex test per key was half the cost of a bound. */
const keyBounds = new Map<string, number>();
/** At most this many keys are remembered (entries); others are bounded on each use. */
const KEY_BOUNDS_MAX = 1_000;

/** {@link jsonBytesAtMost} of an object key, bytes, remembered for the first {@link KEY_BOUNDS_MAX} keys. */
function keyBytesAtMost(key: string): number {
  let b = keyBounds.get(key);
  if (b === undefined) {
    b = jsonBytesAtMost(key);
    if (keyBounds.size < KEY_BOUNDS_MAX) keyBounds.set(key, b);
  }
  return b;
}

/** What {@link takeWithinBytes} kept. */
export interface Fitted<V> {
  /** The rendered entries kept, in the order of the input (nulls left out). */
  views: V[];
  /** How many input items the page covers (rendered or null), counted from the end it was taken from. */
  taken: number;
  /** Bytes of the kept views, each with its separating comma: exact once the page came near the budget, else an upper bound ({@link jsonBytesAtMost}). */
  bytes: number;
}

/**
 * Render `items` one by one, from the first (or, with `fromEnd`, from the last) and stop
 * before the first one whose view would take the page past `budgetBytes`: the rest is left
 * for the next page. A page always holds at least one view, however large (a single huge
 * message still gets through, alone). An item rendered as null (not shown: undecryptable,
 * hidden, a duplicate) takes no bytes and is covered by the page, so paging on from it
 * neither repeats nor skips anything.
 *
 * Sizes are the views' JSON bytes ({@link jsonBytes}); while the cheap upper bounds of the
 * views kept so far ({@link jsonBytesAtMost}) stay within the budget, no view is serialized
 * here (an ordinary page), and once they would pass it the kept views are measured exactly
 * and the page goes on by exact sizes, so it is cut only where the real bytes pass the budget.
 * @param items the page as read, in reply order
 * @param render the entry as it goes out, or null when it is not shown
 * @param budgetBytes bytes the views may take together ({@link pageBudgetBytes})
 * @param fromEnd keep the last items (a history page, oldest first, keeps its newest)
 * @returns the kept views and how many items they cover
 */
export function takeWithinBytes<T, V>(items: readonly T[], render: (item: T) => V | null, budgetBytes: number, fromEnd = false): Fitted<V> {
  const views: V[] = [];
  let bound = 0;
  let exact: number | undefined;
  let taken = 0;
  for (; taken < items.length; taken++) {
    const item = items[fromEnd ? items.length - 1 - taken : taken]!;
    const view = render(item);
    if (view === null) continue;
    if (exact === undefined) {
      const b = jsonBytesAtMost(view) + 1;
      if (bound + b <= budgetBytes) {
        views.push(view);
        bound += b;
        continue;
      }
      exact = views.reduce((n, v) => n + jsonBytes(v) + 1, 0);
    }
    const size = jsonBytes(view) + 1;
    if (views.length > 0 && exact + size > budgetBytes) break;
    views.push(view);
    exact += size;
  }
  if (fromEnd) views.reverse();
  return { views, taken, bytes: exact ?? bound };
}
