/**
 * Helpers for the group tests (PROTOCOL §7): fresh users, a ready group with an owner,
 * admins and members (each logged in), request-and-expect, error assertions, row counts
 * and bounded polling.
 */
import { expect } from 'vitest';
import type { Frame, TestClient } from './client.ts';
import type { TestServer } from './server.ts';
import { count, expectError, freshId, freshUsers, waitFor, ISO, MISSING_ID, UUID7 } from './dmkit.ts';

/** Shared with the DM tests (dmkit.ts). */
export { count, expectError, freshId, freshUsers, waitFor, ISO, MISSING_ID, UUID7 };

/** Send `frame` and expect a direct reply of `type`; resolves it. */
export async function ok(c: TestClient, frame: Record<string, unknown>, type: string): Promise<Frame> {
  const r = await c.request(frame);
  expect(r.type, JSON.stringify(r)).toBe(type);
  return r;
}

/** Presence events (PROTOCOL §8), which group members get about each other as contacts. */
export const PRESENCE = new Set(['user_online', 'user_offline']);
/** A group id that names no group. */
export const MISSING_GROUP = 'group_00000000-0000-4000-8000-000000000000';

/** A logged-in user. */
export interface Who {
  id: string;
  c: TestClient;
}

/** A ready group: owner, admins, members (each logged in once, frames cleared). */
export interface Crew {
  s: TestServer;
  groupId: string;
  owner: Who;
  admins: Who[];
  members: Who[];
  /** Everyone, owner first. */
  all: Who[];
  /** Fresh user (logged in) who follows nobody and is not in the group; the owner follows them. */
  outsider(): Promise<Who>;
}

/** The three roles of PROTOCOL §7, for table-driven tests. */
export const ROLES = ['owner', 'admin', 'member'] as const;
export type RoleName = (typeof ROLES)[number];

/** The first user of `role` in `g`. */
export function by(g: Crew, role: RoleName, i = 0): Who {
  return role === 'owner' ? g.owner : role === 'admin' ? g.admins[i]! : g.members[i]!;
}

/**
 * Create a group: a fresh owner who follows everyone, `admins` + `members` fresh users
 * added as initial members, the first `admins` promoted. Waits for every setup event,
 * then clears every client's recorded frames.
 */
export async function makeGroup(s: TestServer, opts: { admins?: number; members?: number; maxMembers?: number; groupName?: string } = {}): Promise<Crew> {
  const nA = opts.admins ?? 0;
  const nM = opts.members ?? 0;
  const ids = await freshUsers(s, 1 + nA + nM);
  const [ownerId, ...rest] = ids as [string, ...string[]];
  if (rest.length) await s.follow(...rest.map((id) => [ownerId, id] as [string, string]));
  const clients = await Promise.all(ids.map((id) => s.login(id)));
  const all: Who[] = ids.map((id, i) => ({ id, c: clients[i]! }));
  const created = await ok(
    all[0]!.c,
    { type: 'create_group', groupName: opts.groupName ?? 'Crew', initialMembers: rest, ...(opts.maxMembers ? { maxMembers: opts.maxMembers } : {}) },
    'group_created',
  );
  expect(created.rejectedMembers).toEqual([]);
  const groupId = created.groupId as string;
  await Promise.all(all.slice(1).map((w) => w.c.next((f) => f.type === 'group_created' && f.groupId === groupId)));
  for (const w of all.slice(1, 1 + nA)) {
    await ok(all[0]!.c, { type: 'promote_member', groupId, userId: w.id }, 'member_promoted');
    await Promise.all(all.slice(1).map((x) => x.c.next((f) => f.type === 'member_promoted' && f.userId === w.id)));
  }
  for (const w of all) w.c.clear();
  return {
    s,
    groupId,
    owner: all[0]!,
    admins: all.slice(1, 1 + nA),
    members: all.slice(1 + nA),
    all,
    async outsider() {
      const [id] = await freshUsers(s, 1);
      await s.follow([ownerId, id!]);
      return { id: id!, c: await s.login(id!) };
    },
  };
}

/** Send a group message as `w` and expect `group_message_sent`; resolves G. */
export async function say(w: Who, groupId: string, content: string, extra: Record<string, unknown> = {}): Promise<Frame> {
  const r = await ok(w.c, { type: 'send_group_message', groupId, content, ...extra }, 'group_message_sent');
  return r.message as Frame;
}

/** Wait on each client for a frame of `type` about `groupId` (and matching `pred`); resolves them in order. */
export async function allGet(ws: readonly Who[], type: string, pred: (f: Frame) => boolean = () => true): Promise<Frame[]> {
  return Promise.all(ws.map((w) => w.c.next((f) => f.type === type && pred(f))));
}

/** History of a group as `w` sees it (limit 100 unless given). */
export async function groupHistory(w: Who, groupId: string, extra: Record<string, unknown> = {}): Promise<Frame> {
  return ok(w.c, { type: 'get_group_messages', groupId, limit: 100, ...extra }, 'group_messages');
}

/** Ids of the messages of a `group_messages` frame, in order. */
export const idsOf = (page: Frame): string[] => (page.messages as Frame[]).map((m) => m.id as string);

/**
 * `sync` from `cursor` until `pred(result)` holds (bounded). sync only returns changes
 * below the database snapshot's xmin (PROTOCOL §9, SYSTEM_DESIGN.md), which on a shared
 * PostgreSQL server another database's open transaction can hold back for a moment.
 */
export async function syncUntil(w: Who, cursor: string | undefined, pred: (r: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
  let last: Frame | undefined;
  try {
    return (await waitFor<Frame | null>(async () => {
      last = await ok(w.c, { type: 'sync', ...(cursor ? { cursor } : {}) }, 'sync_result');
      return pred(last) ? last : null;
    }, timeoutMs, 50))!;
  } catch {
    throw new Error(`sync condition not met; last: ${JSON.stringify(last).slice(0, 1500)}`);
  }
}

/** The entry of `groupId` in `w`'s get_user_groups (asserted present). */
export async function userGroup(w: Who, groupId: string): Promise<Frame> {
  const r = await ok(w.c, { type: 'get_user_groups' }, 'user_groups');
  const g = (r.groups as Frame[]).find((x) => x.groupId === groupId);
  expect(g, JSON.stringify(r)).toBeDefined();
  return g!;
}

/** Matches the `new_group_message` of message `id`. */
export const newMsg = (id: string) => (f: Frame): boolean => f.type === 'new_group_message' && f.message.id === id;
