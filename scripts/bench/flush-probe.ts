/**
 * Disk flush probe: how long the disk under PostgreSQL's WAL takes to make a small write
 * durable, sampled all through a benchmark. An ack means committed, and a commit waits for
 * a WAL flush (`fdatasync`, PostgreSQL's default `wal_sync_method` on Linux): when the
 * host's disk holds a flush for tens of ms, every commit in that time waits, whatever the
 * server does. On this machine kind a flush usually takes ~0.07 ms, but a few a minute take
 * 20–95 ms (2026-12-06: 1,000 write + fdatasync a second for 30 s, 5–8 over 10 ms).
 *
 * A worker thread writes 4 KiB at the start of a file beside the database's data directory
 * and `fdatasync`s it every `intervalMs` (100 a second by default: ~0.4 MB/s of writes and
 * well under 1% of a core), and reports each flush's start (epoch ms) and duration (ms).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** One probed flush. */
export interface Flush {
  /** When the write started, epoch ms (`performance.timeOrigin + performance.now()`). */
  atMs: number;
  /** Write + fdatasync, ms. */
  ms: number;
}

/** The probe's readings over one window. */
export interface FlushWindow {
  /** Flushes started in the window. */
  flushes: number;
  /** Those of them that took at least the threshold. */
  slow: Flush[];
  /** The threshold, ms. */
  thresholdMs: number;
  /** The longest flush in the window, ms (0 without flushes). */
  maxMs: number;
}

/** Default sampling interval, ms. */
export const FLUSH_PROBE_INTERVAL_MS = 10;
/** A flush this long or longer counts as a stall, ms. */
export const SLOW_FLUSH_MS = 10;

// Plain JavaScript, run by the worker (eval: no TypeScript loader needed there). Sleeps with
// Atomics.wait between flushes; posts what it measured every 200 ms as [atMs, ms, ...].
const WORKER_SRC = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { file, intervalMs } = workerData;
const fd = fs.openSync(file, 'w');
const buf = Buffer.alloc(4096, 120);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
let stop = false;
parentPort.on('message', () => { stop = true; });
const now = () => performance.timeOrigin + performance.now();
let out = [];
let lastPost = now();
function step() {
  for (let i = 0; i < 20 && !stop; i++) {
    const t0 = now();
    fs.writeSync(fd, buf, 0, buf.length, 0);
    fs.fdatasyncSync(fd);
    const t1 = now();
    out.push(t0, t1 - t0);
    const wait = intervalMs - (now() - t0);
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
  }
  if (out.length && (stop || now() - lastPost >= 200)) {
    parentPort.postMessage(out);
    out = [];
    lastPost = now();
  }
  if (stop) { fs.closeSync(fd); parentPort.close(); return; }
  setImmediate(step);
}
step();
`;

/** A running probe; see the module comment. */
export class FlushProbe {
  private readonly at: number[] = [];
  private readonly ms: number[] = [];

  private constructor(
    private readonly worker: Worker,
    private readonly file: string,
    /** Slow-flush threshold, ms. */
    readonly thresholdMs: number,
  ) {
    worker.on('message', (m: number[]) => {
      for (let i = 0; i + 1 < m.length; i += 2) {
        this.at.push(m[i]!);
        this.ms.push(m[i + 1]!);
      }
    });
    // A probe that fails (disk full, say) just stops reporting; the figures then say 0 flushes.
    worker.on('error', () => undefined);
  }

  /**
   * Start probing with a file `chat-flush-probe` in `dir` (same file system as the WAL),
   * one flush every `intervalMs` ms; flushes of `thresholdMs` or more are slow.
   */
  static start(dir: string, intervalMs = FLUSH_PROBE_INTERVAL_MS, thresholdMs = SLOW_FLUSH_MS): FlushProbe {
    const file = join(dir, 'chat-flush-probe');
    const worker = new Worker(WORKER_SRC, { eval: true, workerData: { file, intervalMs } });
    worker.unref();
    return new FlushProbe(worker, file, thresholdMs);
  }

  /** The flushes started in [`fromMs`, `toMs`) (epoch ms) that the worker has reported so far. */
  window(fromMs: number, toMs: number): FlushWindow {
    let flushes = 0;
    let maxMs = 0;
    const slow: Flush[] = [];
    for (let i = 0; i < this.at.length; i++) {
      const a = this.at[i]!;
      if (a < fromMs || a >= toMs) continue;
      const d = this.ms[i]!;
      flushes++;
      if (d > maxMs) maxMs = d;
      if (d >= this.thresholdMs) slow.push({ atMs: a, ms: d });
    }
    return { flushes, slow, thresholdMs: this.thresholdMs, maxMs };
  }

  /** Stop the worker (at most 2 s) and remove its file. */
  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage('stop');
    const timer = setTimeout(() => void this.worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
    rmSync(this.file, { force: true });
  }
}
