/**
 * Inbound frames: JSON text → validated command (PROTOCOL §2, §3, §6, §9, §11).
 * Unknown fields are ignored (never read, never trusted); aliases are folded into the
 * canonical field names before validation. Group commands (§7) are registered by
 * `inboundGroups.ts` into the same table.
 */
import { z } from 'zod';
import { ChatError } from './errors.ts';
import { clientMessageId, conversationId, flag, intIn, messageId, reaction, requestId, text, userId } from './fields.ts';

/** Limits that shape validation (from Config). */
export interface ProtocolLimits {
  /** Longest `content`, code points (MAX_MESSAGE_LENGTH). */
  maxMessageLength: number;
  /** Upper bound of a group's maxMembers (MAX_GROUP_SIZE). */
  maxGroupSize: number;
}

/** A field alias: when `from` is present and `to` is not, `to` takes its value (PROTOCOL §2 "alias"). */
export type FieldAliases = readonly (readonly [from: string, to: string])[];

/** One command type: its schema and field aliases. */
export interface CommandSpec {
  schema: z.ZodType;
  aliases?: FieldAliases;
}

/** Type aliases: inbound `type` → canonical type. */
export const TYPE_ALIASES: Readonly<Record<string, string>> = {
  auth: 'authenticate',
  edit_private_message: 'edit_message',
};

const empty = z.object({});
/** §11 `communityId`: a string or number, echoed as a string (§2: ids are strings on output). */
const communityId = z.union([z.string().max(200), z.number()]).transform(String);
const paging = { limit: intIn(1, 100).optional(), offset: intIn(0, 1_000_000_000).optional(), before: intIn(0, Number.MAX_SAFE_INTEGER).optional() };

/** The core and direct-message command specs (PROTOCOL §3, §6, §8, §9, §11). */
export function coreCommands(limits: ProtocolLimits): Record<string, CommandSpec> {
  const content = text(1, limits.maxMessageLength, true);
  const reactionSpec: CommandSpec = { schema: z.object({ messageId, reaction }), aliases: [['emoji', 'reaction']] };
  const deleteSpec: CommandSpec = { schema: z.object({ messageId, deleteForEveryone: flag.optional() }) };
  return {
    // A null token is a missing one (TOKEN_MISSING, §3 item 4), as clients send when they have none.
    // Its length is the verifier's check (TOKEN_INVALID, auth/verifier.ts MAX_TOKEN_LENGTH): an auth_error, not BAD_REQUEST.
    authenticate: { schema: z.object({ token: z.string().nullable().optional() }) },
    ping: { schema: empty },
    test: { schema: empty },
    send_private_message: {
      schema: z.object({ recipientId: userId, content, replyTo: messageId.optional().nullable(), clientMessageId: clientMessageId.optional() }),
      aliases: [['replyToMessageId', 'replyTo']],
    },
    start_conversation: { schema: z.object({ recipientId: userId }) },
    get_conversations: { schema: z.object({ limit: intIn(1, 100).optional(), before: z.string().max(200).optional() }) },
    get_private_messages: {
      schema: z.object({ recipientId: userId.optional(), conversationId: conversationId.optional(), ...paging }).refine((v) => v.recipientId !== undefined || v.conversationId !== undefined, {
        message: 'recipientId or conversationId is required',
        path: ['recipientId'],
      }),
    },
    edit_message: { schema: z.object({ messageId, newContent: content }), aliases: [['content', 'newContent']] },
    delete_message: deleteSpec,
    delete_private_message: deleteSpec,
    delete_conversation: { schema: z.object({ conversationId, deleteForEveryone: flag.optional() }) },
    mark_message_read: { schema: z.object({ messageId }) },
    typing: {
      schema: z.object({ recipientId: userId.optional(), groupId: conversationId.optional(), isTyping: flag.optional() }).refine((v) => v.recipientId !== undefined || v.groupId !== undefined, {
        message: 'recipientId or groupId is required',
        path: ['recipientId'],
      }),
    },
    add_reaction: reactionSpec,
    remove_reaction: reactionSpec,
    message_delivered: { schema: z.object({ messageIds: z.array(messageId).min(1).max(100) }) },
    sync: { schema: z.object({ cursor: z.string().max(512).optional().nullable(), limit: intIn(1, 500).optional() }) },
    get_online_users: { schema: empty },
    get_presence: { schema: z.object({ userIds: z.array(userId).max(100) }) },
    get_communities: { schema: empty },
    get_community_members: { schema: z.object({ communityId: communityId.optional() }) },
    get_community_progress: { schema: z.object({ communityId: communityId.optional() }) },
  };
}

/** A decoded, validated frame. `type` is canonical; `rawType` is what the client sent. */
export interface DecodedFrame {
  type: string;
  rawType: string;
  requestId?: string;
  cmd: Record<string, unknown>;
}

/** Outcome of {@link FrameDecoder.decode}: a frame, or an error to send (with the requestId when known). */
export type DecodeResult = { ok: true; frame: DecodedFrame } | { ok: false; error: ChatError; requestId?: string };

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Nesting depth up to which keys are checked; a deeper frame that may hide a forbidden key is refused. */
const MAX_CHECKED_DEPTH = 64;

/**
 * Deepest nesting of arrays and objects a frame may have, outside strings. Every command of
 * PROTOCOL §3–§11 nests 2 deep; the limit leaves room for extra fields clients add (ignored).
 */
export const MAX_FRAME_DEPTH = 32;
/**
 * Most arrays and objects one frame may hold, outside strings (every command holds at most
 * 2). Parsing containers is what costs: a 64 KiB frame of 21k–32k nested arrays took V8's
 * `JSON.parse` 2.2–2.9 ms against 0.01–0.5 ms for flat content, and fitted in an ignored
 * field of a `ping` before authentication (audit 7, F4).
 */
export const MAX_FRAME_CONTAINERS = 256;

/**
 * Whether `raw` nests at most `maxDepth` arrays/objects deep and holds at most
 * `maxContainers` of them, counting `[` and `{` outside JSON strings; run before `JSON.parse`.
 * Fast path: when the bracket characters anywhere (strings included) are at most
 * `min(maxDepth, maxContainers)` the answer is yes after two native `indexOf` passes (a normal
 * frame has 1–3); otherwise one `charCodeAt` pass over what is outside strings, each string
 * crossed with `indexOf` (5,000 `[{` in a message: 0.4 µs against `JSON.parse`'s 2.2). Text
 * that is not JSON may pass: `JSON.parse` refuses it next.
 */
export function structureWithin(raw: string, maxDepth = MAX_FRAME_DEPTH, maxContainers = MAX_FRAME_CONTAINERS): boolean {
  const quick = Math.min(maxDepth, maxContainers);
  let n = 0;
  for (let i = raw.indexOf('{'); i !== -1 && n <= quick; i = raw.indexOf('{', i + 1)) n++;
  for (let i = raw.indexOf('['); i !== -1 && n <= quick; i = raw.indexOf('[', i + 1)) n++;
  if (n <= quick) return true;
  let depth = 0;
  let containers = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 34) {
      // A string: jump to its closing quote with indexOf, the first `"` preceded by an even
      // number of backslashes (a page of `[{` in a message costs one native scan, not a loop).
      let j = i;
      for (;;) {
        j = raw.indexOf('"', j + 1);
        if (j === -1) return true;
        let backslashes = 0;
        for (let k = j - 1; k > i && raw.charCodeAt(k) === 92; k--) backslashes++;
        if ((backslashes & 1) === 0) break;
      }
      i = j;
    } else if (c === 91 || c === 123) {
      if (++depth > maxDepth || ++containers > maxContainers) return false;
    } else if (c === 93 || c === 125) depth--;
  }
  return true;
}

function hasForbiddenKey(v: unknown, depth = 0): boolean {
  if (v === null || typeof v !== 'object') return false;
  // Deeper than any frame of this protocol: refused rather than left unchecked (fail closed).
  if (depth > MAX_CHECKED_DEPTH) return true;
  if (Array.isArray(v)) return v.some((x) => hasForbiddenKey(x, depth + 1));
  for (const k of Object.keys(v)) {
    if (FORBIDDEN_KEYS.has(k) || hasForbiddenKey((v as Record<string, unknown>)[k], depth + 1)) return true;
  }
  return false;
}

/** Turns raw text frames into validated commands using one table of {@link CommandSpec}s. */
export class FrameDecoder {
  /** @param specs canonical type → spec (core, groups, …) */
  constructor(private readonly specs: Readonly<Record<string, CommandSpec>>) {}

  /** True when `type` (canonical or alias) is a known command. */
  knows(type: string): boolean {
    return (TYPE_ALIASES[type] ?? type) in this.specs;
  }

  /**
   * Decode one text frame. Never throws: bad input yields `BAD_REQUEST` (not JSON, not
   * an object, nested deeper than {@link MAX_FRAME_DEPTH} or holding more than
   * {@link MAX_FRAME_CONTAINERS} arrays/objects (checked before parsing), no string `type`,
   * a bad or ill-typed field — `field` names it — or a `__proto__`/`constructor`/`prototype`
   * key anywhere) or `UNKNOWN_TYPE` (PROTOCOL §2.2).
   */
  decode(raw: string): DecodeResult {
    if (!structureWithin(raw)) {
      return { ok: false, error: new ChatError('BAD_REQUEST', `frame nests arrays/objects deeper than ${MAX_FRAME_DEPTH} levels or holds more than ${MAX_FRAME_CONTAINERS} of them`) };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      return { ok: false, error: new ChatError('BAD_REQUEST', 'frame is not valid JSON') };
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      return { ok: false, error: new ChatError('BAD_REQUEST', 'frame must be a JSON object') };
    }
    const obj = parsed as Record<string, unknown>;
    let rid: string | undefined;
    if (obj.requestId !== undefined) {
      const r = requestId.safeParse(obj.requestId);
      if (!r.success) return { ok: false, error: new ChatError('BAD_REQUEST', 'requestId must be a string of at most 64 characters', { field: 'requestId' }) };
      rid = r.data;
    }
    // Cheap text test first: the walk only runs when a forbidden name appears at all, or a
    // `\u` escape could spell one (`"\u005f_proto__"` parses to the key `__proto__`).
    if ((raw.includes('__proto__') || raw.includes('constructor') || raw.includes('prototype') || raw.includes('\\u')) && hasForbiddenKey(obj)) {
      return { ok: false, error: new ChatError('BAD_REQUEST', `forbidden object key (__proto__, constructor or prototype), or nesting deeper than ${MAX_CHECKED_DEPTH} levels`), requestId: rid };
    }
    if (typeof obj.type !== 'string' || obj.type.length === 0) {
      return { ok: false, error: new ChatError('BAD_REQUEST', 'type must be a non-empty string', { field: 'type' }), requestId: rid };
    }
    const rawType = obj.type;
    const type = TYPE_ALIASES[rawType] ?? rawType;
    const spec = Object.hasOwn(this.specs, type) ? this.specs[type] : undefined;
    if (!spec) {
      return { ok: false, error: new ChatError('UNKNOWN_TYPE', `unknown message type ${JSON.stringify(rawType.slice(0, 64))}`), requestId: rid };
    }
    if (spec.aliases) {
      for (const [from, to] of spec.aliases) if (obj[to] === undefined && obj[from] !== undefined) obj[to] = obj[from];
    }
    const r = spec.schema.safeParse(obj);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      const field = issue.path.length ? String(issue.path[0]) : undefined;
      const message = field ? `${field}: ${obj[field] === undefined ? 'is required' : issue.message}` : issue.message;
      return { ok: false, error: new ChatError('BAD_REQUEST', message, field ? { field } : {}), requestId: rid };
    }
    return { ok: true, frame: { type, rawType, requestId: rid, cmd: r.data as Record<string, unknown> } };
  }
}
