/**
 * Load generator side: the pool of authenticated WebSocket clients of one process.
 * Opens connections with bounded concurrency (connect → authenticate → auth_success;
 * the opening handshake by ./upgrade.ts, everything after it by `ws`),
 * routes every later frame to a handler, and offers request/response by `requestId`
 * for the few setup commands (create_group, add_group_member).
 */
import WebSocket from 'ws';
import type { KeyObject } from 'node:crypto';
import { signToken } from '../../src/auth/tokens.ts';
import type { ClientSpec, ConnectResult, StatusResult } from './ipc.ts';
import { nowMs } from './ipc.ts';
import { encodeHist, newHist, recordMs } from './histo.ts';
import { openWebSocket, upgradeTarget, type UpgradeCallbacks, type UpgradeTarget } from './upgrade.ts';
import type { ClientHandshake } from './args.ts';

/** An authenticated client. */
export interface Client {
  key: string;
  userId: string;
  ws: WebSocket;
}

/** Called for every frame after authentication: `type` is the frame's type, `raw` its text. */
export type FrameHandler = (client: Client, type: string, raw: string) => void;

const TYPE_RE = /"type"\s*:\s*"([^"]+)"/;
const REQ_RE = /"requestId"\s*:\s*"(rq-[^"]+)"/;

/** The frame's `type` without a full JSON parse (our frames' first "type" key is the frame's). */
export function frameType(raw: string): string {
  return TYPE_RE.exec(raw)?.[1] ?? '';
}

/** A parsed reply to {@link ClientPool.request}. */
export type Reply = Record<string, unknown> & { type: string };

/** The clients of one load-generator process. */
export class ClientPool {
  readonly clients = new Map<string, Client>();
  /** Close codes seen on authenticated connections: code → count. */
  readonly closes: Record<string, number> = {};
  handler: FrameHandler | null = null;
  private readonly pending = new Map<string, (r: Reply) => void>();
  private reqSeq = 0;

  private readonly target: UpgradeTarget;

  /**
   * @param url ws://127.0.0.1:PORT/
   * @param key the HS256 key tokens are signed with
   * @param handshake who does the opening handshake: `net` (./upgrade.ts) or `ws` (`ws`'s client)
   */
  constructor(
    private readonly url: string,
    private readonly key: KeyObject,
    private readonly handshake: ClientHandshake = 'net',
  ) {
    this.target = upgradeTarget(url);
  }

  /** Number of clients whose socket is open. */
  openCount(): number {
    let n = 0;
    for (const c of this.clients.values()) if (c.ws.readyState === WebSocket.OPEN) n++;
    return n;
  }

  /**
   * Open and authenticate `specs`, at most `concurrency` at a time, each within `timeoutMs`,
   * starting at epoch ms `startAt` (tokens are signed before it, outside the measured span).
   */
  async connect(specs: readonly ClientSpec[], concurrency: number, timeoutMs: number, startAt = 0): Promise<ConnectResult> {
    const tokens = specs.map((s) => signToken(this.key, s.userId, { ttlS: 6 * 3600 }));
    const wait = startAt - nowMs();
    if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, 10_000)));
    const hist = newHist();
    const failures: Record<string, number> = {};
    let ok = 0;
    let next = 0;
    const cpu0 = process.cpuUsage();
    const firstStart = nowMs();
    const worker = async () => {
      // Bounded: each iteration consumes one spec.
      while (next < specs.length) {
        const i = next++;
        const spec = specs[i]!;
        const t0 = nowMs();
        try {
          await this.open(spec, tokens[i]!, timeoutMs);
          recordMs(hist, nowMs() - t0);
          ok++;
        } catch (err) {
          const reason = (err as Error).message;
          failures[reason] = (failures[reason] ?? 0) + 1;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, specs.length)) }, worker));
    const lastEnd = nowMs();
    const cpu = process.cpuUsage(cpu0);
    return { ok, failed: specs.length - ok, failures, firstStart, lastEnd, latency: encodeHist(hist), cpuMs: (cpu.user + cpu.system) / 1000 };
  }

  private open(spec: ClientSpec, token: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws: WebSocket | undefined;
      const fail = (reason: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        abort();
        ws?.terminate();
        reject(new Error(reason));
      };
      const timer = setTimeout(() => fail('timeout'), timeoutMs);
      const callbacks: UpgradeCallbacks = {
        fail,
        open: (socket) => {
          ws = socket;
          const client: Client = { key: spec.key, userId: spec.userId, ws: socket };
          let authed = false;
          socket.on('error', (err) => fail(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
          socket.on('close', (code) => {
            if (!settled) return fail(`close ${code}`);
            // Closes after closeAll() dropped the client are ours, not the server's.
            if (authed && this.clients.get(spec.key) === client) this.closes[code] = (this.closes[code] ?? 0) + 1;
          });
          socket.on('message', (data) => {
            const raw = data.toString();
            const type = frameType(raw);
            if (!settled) {
              if (type === 'auth_success') {
                settled = true;
                authed = true;
                clearTimeout(timer);
                this.clients.set(spec.key, client);
                resolve();
              } else if (type === 'auth_error') {
                fail(`auth_error ${/"code"\s*:\s*"([^"]+)"/.exec(raw)?.[1] ?? '?'}`);
              }
              return; // `connected` and anything else before auth_success
            }
            this.dispatch(client, type, raw);
          });
          socket.send(JSON.stringify({ type: 'authenticate', token }));
        },
      };
      const abort = this.handshake === 'net' ? openWebSocket(this.target, spec.localAddress, callbacks) : this.openWithWs(spec.localAddress, timeoutMs, callbacks);
    });
  }

  /** The same as {@link openWebSocket}, by `ws`'s own client handshake (`--client-handshake ws`). */
  private openWithWs(localAddress: string | undefined, timeoutMs: number, cb: UpgradeCallbacks): () => void {
    const ws = new WebSocket(this.url, { perMessageDeflate: false, handshakeTimeout: timeoutMs, ...(localAddress ? { localAddress } : {}) });
    let done = false;
    const fail = (reason: string) => {
      if (done) return;
      done = true;
      ws.terminate();
      cb.fail(reason);
    };
    ws.on('unexpected-response', (_req, res) => fail(`HTTP ${res.statusCode}`));
    ws.on('error', (err) => fail(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    ws.on('close', () => fail('closed'));
    ws.once('open', () => {
      done = true;
      ws.removeAllListeners();
      cb.open(ws);
    });
    return () => {
      if (!done) {
        done = true;
        ws.terminate();
      }
    };
  }

  private dispatch(client: Client, type: string, raw: string): void {
    if (this.pending.size > 0) {
      const rq = REQ_RE.exec(raw)?.[1];
      const cb = rq ? this.pending.get(rq) : undefined;
      if (cb) {
        this.pending.delete(rq!);
        cb(JSON.parse(raw) as Reply);
        return;
      }
    }
    this.handler?.(client, type, raw);
  }

  /** Send `frame` (a `requestId` is added) on client `key`; resolve its direct reply within `timeoutMs`. */
  request(key: string, frame: Record<string, unknown>, timeoutMs: number): Promise<Reply> {
    const client = this.clients.get(key);
    if (!client) return Promise.reject(new Error(`no client ${key}`));
    const requestId = `rq-${++this.reqSeq}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new Error(`no reply to ${String(frame.type)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      client.ws.send(JSON.stringify({ ...frame, requestId }));
    });
  }

  /** Open count and close codes. */
  status(): StatusResult {
    return { open: this.openCount(), closes: { ...this.closes } };
  }

  /** Close every client (normal close, then terminate after `graceMs`); the pool can connect again. */
  async closeAll(graceMs = 2000): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    for (const c of all) c.ws.close(1000);
    const deadline = Date.now() + graceMs;
    for (let i = 0; i < 200 && Date.now() < deadline && all.some((c) => c.ws.readyState !== WebSocket.CLOSED); i++) await new Promise((r) => setTimeout(r, 10));
    for (const c of all) if (c.ws.readyState !== WebSocket.CLOSED) c.ws.terminate();
  }
}
