/**
 * Mentions (PROTOCOL §7): `@name` at the start or after white space, `name` =
 * `[A-Za-z0-9_]+`, matched case-insensitively against member usernames; `@everyone` and
 * `@all` address all members but the sender. No duplicates, never the sender. An e-mail
 * address (`bob@example.com`) is not a mention: its `@` follows a non-space.
 */
import type { Mention } from '../protocol/outbound.ts';

const MENTION = /(?:^|\s)@([A-Za-z0-9_]+)/g;

/**
 * Parse `content` against the group's members (`{userId, username}`). Resolves the
 * `mentions` array and the ids of the members addressed (sender excluded).
 */
export function parseMentions(content: string, members: readonly { userId: string; username: string | null }[], senderId: string): { mentions: Mention[]; addressed: Set<string> } {
  const names = new Set<string>();
  for (const m of content.matchAll(MENTION)) names.add(m[1]!.toLowerCase());
  const mentions: Mention[] = [];
  const addressed = new Set<string>();
  if (names.size === 0) return { mentions, addressed };
  for (const member of members) {
    if (member.userId === senderId || !member.username) continue;
    if (names.has(member.username.toLowerCase())) {
      mentions.push({ type: 'user', userId: member.userId, username: member.username });
      addressed.add(member.userId);
    }
  }
  if (names.has('everyone') || names.has('all')) {
    mentions.push({ type: 'everyone' });
    for (const member of members) if (member.userId !== senderId) addressed.add(member.userId);
  }
  return { mentions, addressed };
}
