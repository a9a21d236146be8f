/**
 * A real `ws` test client: records every frame, waits for frames by predicate, sends
 * requests with a requestId and waits for their direct reply (PROTOCOL §2).
 */
import WebSocket from 'ws';

/** Any frame (parsed JSON object). */
export type Frame = Record<string, any> & { type: string };

let seq = 0;

/** A connected client. */
export class TestClient {
  readonly frames: Frame[] = [];
  private cursor = 0;
  private waiters: (() => void)[] = [];
  /** Resolves with the close code and reason once the socket closes. */
  readonly closed: Promise<{ code: number; reason: string }>;
  closeCode: number | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()));
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        resolve({ code, reason: reason.toString() });
        this.wake();
      }),
    );
    ws.on('error', () => {});
  }

  /** Open a socket to `url` and wait for the `connected` frame. */
  static async connect(url: string, opts: { headers?: Record<string, string>; localAddress?: string } = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { headers: opts.headers, localAddress: opts.localAddress });
    const c = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    });
    await c.next('connected');
    return c;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Send a frame (object → JSON, string as is). */
  send(frame: object | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /**
   * The first frame not yet taken that matches (a type name or a predicate), waiting up
   * to `timeoutMs`. Frames before it stay available to later calls. Rejects on timeout
   * with the frames seen.
   */
  async next(match: string | ((f: Frame) => boolean), timeoutMs = 5000): Promise<Frame> {
    const pred = typeof match === 'string' ? (f: Frame) => f.type === match : match;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = this.cursor; i < this.frames.length; i++) {
        const f = this.frames[i]!;
        if (pred(f)) {
          this.frames.splice(i, 1);
          return f;
        }
      }
      const left = deadline - Date.now();
      if (left <= 0 || (this.closeCode !== undefined && this.ws.readyState === WebSocket.CLOSED)) {
        throw new Error(`no matching frame (${typeof match === 'string' ? match : 'predicate'}) within ${timeoutMs} ms; close=${this.closeCode}; unread: ${JSON.stringify(this.frames.slice(this.cursor)).slice(0, 1500)}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Send `frame` with a fresh requestId and resolve its direct reply (ack, result or error). */
  async request(frame: Record<string, unknown>, timeoutMs = 5000): Promise<Frame> {
    const requestId = `r${++seq}`;
    this.send({ ...frame, requestId });
    return this.next((f) => f.requestId === requestId, timeoutMs);
  }

  /**
   * Assert no frame matching arrives within `ms` (resolves true when none came). Throws when
   * the connection is closed, or closes during the wait: nothing could have arrived then, so
   * the check would pass without testing anything.
   */
  async none(match: string | ((f: Frame) => boolean), ms = 300): Promise<boolean> {
    try {
      const f = await this.next(match, ms);
      throw new Error(`unexpected frame ${JSON.stringify(f).slice(0, 500)}`);
    } catch (err) {
      if ((err as Error).message.startsWith('unexpected frame')) throw err;
      if (this.ws.readyState !== WebSocket.OPEN) throw new Error(`none(): the connection is not open (close=${this.closeCode}): no frame could have arrived`);
      return true;
    }
  }

  /** Drop every recorded frame. */
  clear(): void {
    this.frames.length = 0;
  }

  /** Close normally and wait for the close. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 1000))]);
    this.ws.terminate();
  }
}
