/**
 * Typing indicators (PROTOCOL §6 `typing`, §4 typing budget, §5 blocks): forwarded as
 * `typing_indicator`; a typist that stops refreshing for TYPING_TIMEOUT_MS (6 s) or
 * disconnects produces `isTyping:false`. Blocked, unknown or over-budget typing is
 * dropped silently (the actor still gets its one reply).
 */
import { nowIso } from '../protocol/outbound.ts';
import { directConversationId, publish, type Actor, type ChatDeps, type Reply } from './context.ts';

/** Resolves the audience of group typing (members but the actor, minus blocks); set by the groups service. */
export type GroupTypingAudience = (actor: Actor, groupId: string) => Promise<string[] | null>;

interface Active {
  timer: NodeJS.Timeout;
  connId: string;
  audience: string[];
  target: { conversationId?: string; groupId?: string };
  actor: Actor;
}

/** Typing state of this process's connections. */
export class Typing {
  private readonly active = new Map<string, Active>();
  /** Set by the groups service. */
  groupAudience: GroupTypingAudience | undefined;

  constructor(private readonly deps: ChatDeps) {}

  /** `typing` → `typing_indicator_sent`; forwards to the recipient or the group's members. */
  async typing(actor: Actor, cmd: { recipientId?: string; groupId?: string; isTyping?: boolean }): Promise<Reply> {
    const isTyping = cmd.isTyping ?? true;
    const reply: Reply = { type: 'typing_indicator_sent', recipientId: cmd.recipientId ?? null, isTyping, timestamp: nowIso() };
    if (cmd.groupId) reply.groupId = cmd.groupId;
    const key = `${actor.userId}|${cmd.groupId ? 'g:' + cmd.groupId : 'u:' + cmd.recipientId}`;
    if (!isTyping) {
      this.stop(key);
      return reply;
    }
    if ((await this.deps.limits.consume('typing', actor.userId)) !== null) return reply;
    let audience: string[] | null;
    let target: Active['target'];
    try {
      if (cmd.groupId) {
        audience = this.groupAudience ? await this.groupAudience(actor, cmd.groupId) : null;
        target = { groupId: cmd.groupId };
      } else {
        const rid = cmd.recipientId!;
        const rel = rid === actor.userId ? null : await this.deps.relations.pair(actor.userId, rid);
        audience = rel && rel.bExists && !rel.blocked ? [rid] : null;
        target = { conversationId: directConversationId(actor.userId, rid).id };
      }
    } catch {
      return reply; // lookups failing: drop (fail closed), still one reply
    }
    if (!audience || audience.length === 0) return reply;
    const prev = this.active.get(key);
    if (prev) clearTimeout(prev.timer);
    const timer = setTimeout(() => this.stop(key), this.deps.settings.typingTimeoutMs);
    timer.unref();
    this.active.set(key, { timer, connId: actor.connId, audience, target, actor });
    this.emit(actor, audience, target, true);
    return reply;
  }

  /** A connection closed: every indicator it started ends with `isTyping:false`. */
  connectionClosed(connId: string): void {
    for (const [key, a] of this.active) if (a.connId === connId) this.stop(key);
  }

  /** Stop every timer (shutdown). */
  close(): void {
    for (const a of this.active.values()) clearTimeout(a.timer);
    this.active.clear();
  }

  private stop(key: string): void {
    const a = this.active.get(key);
    if (!a) return;
    clearTimeout(a.timer);
    this.active.delete(key);
    this.emit(a.actor, a.audience, a.target, false);
  }

  private emit(actor: Actor, audience: string[], target: Active['target'], isTyping: boolean): void {
    publish(this.deps, audience, {
      type: 'typing_indicator',
      senderId: actor.userId,
      userId: actor.userId,
      senderUsername: actor.username,
      ...target,
      isTyping,
      timestamp: nowIso(),
    });
  }
}
