/**
 * Field validators shared by every inbound schema (PROTOCOL §2): ids, text, limits.
 * Lengths of text are counted in Unicode code points, not UTF-16 units.
 */
import { z } from 'zod';

/** Count of Unicode code points in `s` (a surrogate pair counts once). */
export function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/**
 * Empty, or only Unicode White_Space (Unicode PropList.txt; `String.prototype.trim` misses
 * U+0085 NEL) or U+FEFF, as `trim` removes it. Listed rather than `\p{White_Space}`: a
 * property escape makes V8 load ICU property data, about 4 MB more RSS for the process.
 */
const ALL_WHITE_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*$/;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` is valid Unicode (no lone surrogates) and has no NUL (PROTOCOL §2). */
export function isCleanText(s: string): boolean {
  return !s.includes('\u0000') && !LONE_SURROGATE.test(s);
}

/**
 * A text field of `min..max` code points, valid Unicode without NUL; with `nonBlank`,
 * text that is empty once Unicode White_Space is trimmed is refused. Stored exactly as sent (no escaping).
 */
export const text = (min: number, max: number, nonBlank = false) =>
  z.string().superRefine((s, ctx) => {
    if (!isCleanText(s)) ctx.addIssue({ code: 'custom', message: 'must be valid Unicode without NUL' });
    else if (nonBlank && ALL_WHITE_SPACE.test(s)) ctx.addIssue({ code: 'custom', message: 'must not be empty or only white space' });
    else {
      const n = codePoints(s);
      if (n < min || n > max) ctx.addIssue({ code: 'custom', message: `must be ${min}..${max} characters (got ${n})` });
    }
  });

/**
 * A user id: JSON string or number naming a decimal id (PROTOCOL §2: `1` and `"1"` are
 * the same user). Output: the canonical decimal string without leading zeros.
 */
export const userId = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const s = typeof v === 'number' ? (Number.isSafeInteger(v) && v >= 0 ? String(v) : '') : v.trim();
  if (!/^\d{1,18}$/.test(s)) {
    ctx.addIssue({ code: 'custom', message: 'must be a decimal user id' });
    return z.NEVER;
  }
  return String(BigInt(s));
});

/** A message id: a UUID string (messages get UUIDv7 ids). Lower-cased. */
export const messageId = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a message id (UUID)')
  .transform((s) => s.toLowerCase());

/** A string that {@link isCleanText} accepts: valid Unicode without NUL (PostgreSQL text cannot hold NUL). */
const cleanString = () => z.string().refine(isCleanText, 'must be valid Unicode without NUL');

/** A client-chosen idempotency key, 1..64 characters, valid Unicode without NUL (PROTOCOL §2, §6). */
export const clientMessageId = cleanString().min(1).max(64);

/** `requestId`: optional string ≤ 64 chars, echoed on the direct reply (PROTOCOL §2). */
export const requestId = z.string().max(64);

/** An integer in `min..max`, given as a JSON number or a numeric string. */
export const intIn = (min: number, max: number) =>
  z.union([z.number(), z.string().regex(/^\d+$/)]).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be an integer in ${min}..${max}` });
      return z.NEVER;
    }
    return n;
  });

/** A conversation id as clients send it (`conv_<a>_<b>` or a group id), 1..200 chars, valid Unicode without NUL. */
export const conversationId = cleanString().min(1).max(200);

/** A group id as clients send it (`group_<uuid>`), 1..200 chars, valid Unicode without NUL (PROTOCOL §7). */
export const groupId = cleanString().min(1).max(200);

/** A reaction: 1..16 code points (PROTOCOL §6). */
export const reaction = text(1, 16, true);

/** A boolean flag. */
export const flag = z.boolean();
