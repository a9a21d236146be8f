/**
 * Flow control of what one connection sends us: a token bucket of frames and one of bytes.
 * When either runs dry the connection stops reading its socket until both have refilled,
 * so a client that floods (pings, padded frames, pipelined reads) gets TCP backpressure
 * instead of the process's CPU; no frame is refused and no error is sent. The buckets
 * are far above what an interactive client sends, and per user command budgets
 * (PROTOCOL §4) still apply on top. Before authentication the frame budget is smaller:
 * all a client may do then is authenticate, ping and send the few frames that are held
 * (PROTOCOL §3 item 5).
 */

import type { RawData } from 'ws';

/** Sustained frames per second once authenticated. */
export const FRAMES_PER_S = 100;
/** Frames a connection may send at once (a reconnecting client flushing its queue). */
export const FRAME_BURST = 200;
/** Sustained frames per second before authentication. */
export const FRAMES_PER_S_UNAUTHENTICATED = 10;
/** Frames at once before authentication: the held frames (20), authenticate, pings. */
export const FRAME_BURST_UNAUTHENTICATED = 40;
/** Sustained inbound bytes per second (UTF-8 payload). */
export const BYTES_PER_S = 256 * 1024;
/** Bytes at once (several frames of the largest size, MAX_PAYLOAD_BYTES, default 64 KiB). */
export const BYTE_BURST = 1024 * 1024;
/**
 * Bytes at once before authentication: the token and the 64 KiB of frames held until then
 * (PROTOCOL §3 item 5), with room to spare. A connection is given the full
 * {@link BYTE_BURST} when it authenticates (audit 7, F4: 1 MiB of frames on each of 50
 * anonymous connections was parsed in bursts).
 */
export const BYTE_BURST_UNAUTHENTICATED = 128 * 1024;
/**
 * Most a paused connection's resume is delayed past its refill, ms (uniformly random), so
 * that connections paused together do not all resume, and have their frames parsed, in one
 * turn of the event loop (audit 7, F4).
 */
export const RESUME_JITTER_MS = 50;

/** One connection's inbound buckets. */
export class InboundBudget {
  private frames: number;
  private bytes: number;
  private at: number;
  private authenticated = false;

  /** @param now clock, ms (tests pass their own) */
  constructor(private readonly now: () => number = Date.now) {
    this.frames = FRAME_BURST_UNAUTHENTICATED;
    this.bytes = BYTE_BURST_UNAUTHENTICATED;
    this.at = now();
  }

  /**
   * Charge one frame of `bytes` bytes. The first frame charged as authenticated first
   * raises the byte bucket to {@link BYTE_BURST}.
   * @param bytes payload size, bytes
   * @param authenticated which frame and byte budgets apply
   * @returns 0 while within budget, else how long to stop reading so both buckets are
   *   back to zero, ms (> 0)
   */
  take(bytes: number, authenticated: boolean): number {
    const rate = authenticated ? FRAMES_PER_S : FRAMES_PER_S_UNAUTHENTICATED;
    const burst = authenticated ? FRAME_BURST : FRAME_BURST_UNAUTHENTICATED;
    if (authenticated && !this.authenticated) {
      this.authenticated = true;
      this.bytes = Math.max(this.bytes, BYTE_BURST);
    }
    const byteBurst = authenticated ? BYTE_BURST : BYTE_BURST_UNAUTHENTICATED;
    const t = this.now();
    const dt = (t - this.at) / 1000;
    this.at = t;
    this.frames = Math.min(burst, this.frames + dt * rate) - 1;
    this.bytes = Math.min(byteBurst, this.bytes + dt * BYTES_PER_S) - bytes;
    if (this.frames >= 0 && this.bytes >= 0) return 0;
    return Math.ceil(Math.max((-this.frames / rate) * 1000, (-this.bytes / BYTES_PER_S) * 1000, 1));
  }
}

/** Why a connection stopped reading: commands waiting (its backlog). */
export const PAUSED_BACKLOG = 1;
/** Why a connection stopped reading: its {@link InboundBudget} ran dry. */
export const PAUSED_BUDGET = 2;

/**
 * Whether a socket reads: paused while any reason is set ({@link PAUSED_BACKLOG},
 * {@link PAUSED_BUDGET}), reading again once none is.
 */
export class ReadGate {
  private reasons = 0;

  /** @param socket the WebSocket (`ws` pauses and resumes its TCP socket) */
  constructor(private readonly socket: { pause(): void; resume(): void }) {}

  /** True while reading is paused. */
  get paused(): boolean {
    return this.reasons !== 0;
  }

  /** True while `reason` is set. */
  has(reason: number): boolean {
    return (this.reasons & reason) !== 0;
  }

  /** Set or clear one reason. */
  set(reason: number, on: boolean): void {
    const before = this.reasons;
    this.reasons = on ? before | reason : before & ~reason;
    if (!before && this.reasons) this.socket.pause();
    else if (before && !this.reasons) this.socket.resume();
  }

  /** Clear every reason: read again (drain: the peer's closing handshake must be seen). */
  open(): void {
    if (this.reasons) this.set(this.reasons, false);
  }
}

/** Payload size of an inbound message as `ws` hands it over, bytes. */
export function frameSize(data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0);
  return data instanceof ArrayBuffer ? data.byteLength : data.length;
}
