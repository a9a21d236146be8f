/**
 * Child-process bookkeeping for scripts (benchmarks, fault injection): every process a
 * script starts is registered here by PID and killed by PID when the script exits, fails
 * or is interrupted. Also small bounded wait helpers and a free-port finder.
 * Loopback only: nothing here talks to anything but 127.0.0.1.
 */
import { createServer } from 'node:net';
import { rmSync } from 'node:fs';

/** A process to kill on exit: `signal` is what the emergency cleanup sends it. */
interface Tracked {
  pid: number;
  name: string;
  signal: NodeJS.Signals;
  /** Directories to remove once the process is gone (temp data dirs). */
  dirs: string[];
}

const tracked = new Map<number, Tracked>();
let hooksInstalled = false;

/** Sleep `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

/** True when a process with this PID exists (signal 0 probe). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Send `signal` to `pid`; false when the process does not exist. Never throws. */
export function signalPid(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Poll `check` every `intervalMs` until it resolves truthy or `timeoutMs` elapses.
 * Resolves to the truthy value; rejects with `what` in the message on timeout.
 * Errors thrown by `check` count as "not yet" (the last one is reported on timeout).
 */
export async function waitUntil<T>(what: string, check: () => T | Promise<T>, timeoutMs: number, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  const maxTries = Math.ceil(timeoutMs / Math.max(1, intervalMs)) + 1;
  let lastErr: unknown;
  for (let i = 0; i < maxTries; i++) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(intervalMs);
  }
  const why = lastErr instanceof Error ? `: ${lastErr.message}` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
}

/**
 * Wait (bounded by `timeoutMs`) for `pid` to exit; if it is still alive, SIGKILL it and
 * wait up to 2 s more. Resolves true when it exited without SIGKILL.
 */
export async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  try {
    await waitUntil(`pid ${pid} to exit`, () => !isAlive(pid), timeoutMs, 25);
    return true;
  } catch {
    signalPid(pid, 'SIGKILL');
    await waitUntil(`pid ${pid} to die`, () => !isAlive(pid), 2000, 25).catch(() => undefined);
    return false;
  }
}

/** A free TCP port on 127.0.0.1 (bound then released; a tiny race is possible). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Register `pid` for emergency cleanup: on process exit, SIGINT, SIGTERM or an uncaught
 * error it gets `signal` (default SIGKILL) and `dirs` are removed once it is gone.
 */
export function track(pid: number, name: string, signal: NodeJS.Signals = 'SIGKILL', dirs: string[] = []): void {
  installHooks();
  tracked.set(pid, { pid, name, signal, dirs });
}

/** Remove `pid` from the cleanup list (it was stopped normally). */
export function untrack(pid: number): void {
  tracked.delete(pid);
}

/** Busy-free synchronous sleep (exit handlers cannot await). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Kill every tracked process now (synchronously, by PID) and remove their dirs. */
export function killAllTracked(): void {
  const list = [...tracked.values()];
  tracked.clear();
  for (const t of list) signalPid(t.pid, t.signal);
  // Give them up to 3 s to go away so their data dirs can be removed.
  const deadline = Date.now() + 3000;
  for (let i = 0; i < 300 && Date.now() < deadline && list.some((t) => isAlive(t.pid)); i++) sleepSync(10);
  for (const t of list) {
    if (isAlive(t.pid) && t.signal !== 'SIGKILL') signalPid(t.pid, 'SIGKILL');
    for (const d of t.dirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllTracked);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping ${tracked.size} child process(es)\n`);
      killAllTracked();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`uncaught: ${err.stack ?? err}\n`);
    killAllTracked();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`unhandled rejection: ${(err as Error)?.stack ?? err}\n`);
    killAllTracked();
    process.exit(1);
  });
}
