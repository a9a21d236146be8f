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
  /** The recipient of DM typing. */
  recipientId?: string;
}

/** Where a `typing_indicator` points: the group, or the DM conversation of the actor and the recipient (PROTOCOL §6). */
function targetOf(actor: Actor, cmd: { recipientId?: string; groupId?: string }): Active['target'] {
  return cmd.groupId ? { groupId: cmd.groupId } : { conversationId: directConversationId(actor.userId, cmd.recipientId!).id };
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
      if (this.active.has(key)) this.stop(key);
      else await this.stopElsewhere(actor, cmd);
      return reply;
    }
    if ((await this.deps.limits.consume('typing', actor.userId)) !== null) return reply;
    const target = targetOf(actor, cmd);
    const audience = await this.audience(actor, target, cmd.recipientId);
    const prev = this.active.get(key);
    if (prev) clearTimeout(prev.timer);
    if (!audience || audience.length === 0) {
      // Now blocked (or gone): the indicator ends silently, as any typing across a block (§5).
      this.active.delete(key);
      return reply;
    }
    const timer = setTimeout(() => this.stop(key), this.deps.settings.typingTimeoutMs);
    timer.unref();
    this.active.set(key, { timer, connId: actor.connId, audience, target, actor, recipientId: cmd.recipientId });
    this.emit(actor, audience, target, true);
    return reply;
  }

  /**
   * Who may see the actor typing to `target` now: the recipient unless a block exists or the
   * user is unknown, or the group's members but the actor minus blocks (§5). Null when
   * nobody may, or when a lookup fails (fail closed: typing is dropped).
   */
  private async audience(actor: Actor, target: Active['target'], recipientId: string | undefined): Promise<string[] | null> {
    try {
      if (target.groupId) return this.groupAudience ? await this.groupAudience(actor, target.groupId) : null;
      const rid = recipientId!;
      const rel = rid === actor.userId ? null : await this.deps.relations.pair(actor.userId, rid);
      return rel && rel.bExists && !rel.blocked ? [rid] : null;
    } catch {
      return null;
    }
  }

  /**
   * `isTyping:false` from a device whose process holds no indicator of the user's: another
   * device may have started one on another process (its timer there ends it later, once
   * more). Sent now to the current audience, as on one process; it spends the typing
   * budget (§4), since nothing here shows a start was seen.
   */
  private async stopElsewhere(actor: Actor, cmd: { recipientId?: string; groupId?: string }): Promise<void> {
    if ((await this.deps.limits.consume('typing', actor.userId)) !== null) return;
    const target = targetOf(actor, cmd);
    const audience = await this.audience(actor, target, cmd.recipientId);
    if (audience && audience.length > 0) this.emit(actor, audience, target, false);
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

  /** End an indicator: `isTyping:false` to those who saw it start and may still see the actor (a block since then drops it, §5). */
  private stop(key: string): void {
    const a = this.active.get(key);
    if (!a) return;
    clearTimeout(a.timer);
    this.active.delete(key);
    void this.audience(a.actor, a.target, a.recipientId).then((now) => {
      // Typing again meanwhile: the newer indicator stands.
      if (this.active.has(key)) return;
      const still = now ? a.audience.filter((u) => now.includes(u)) : [];
      if (still.length > 0) this.emit(a.actor, still, a.target, false);
    });
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
