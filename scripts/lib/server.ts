/**
 * The chat server as a child process for scripts: `node --import tsx <entry>` on
 * 127.0.0.1 and a free port, ready when `GET /ready` answers 200, stopped by PID (and
 * killed by PID if the calling script exits or fails; see ./proc.ts). Also /proc readers
 * for a process's RSS and CPU time.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, isAlive, signalPid, track, untrack, waitExit, waitUntil } from './proc.ts';

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Working directory (the repo root). */
  cwd: string;
  /** Entry file relative to `cwd` (default `src/server.ts`; `cluster-server.ts` for the cluster). */
  entry?: string;
  /** `tsx` (default): run with `node --import tsx`; `none`: plain `node` (a compiled .mjs entry). */
  loader?: 'tsx' | 'none';
  /** Node options before the entry (e.g. the flags `npm run start:prod` uses). */
  nodeFlags?: readonly string[];
  /** Bound on reaching `/ready` 200, ms (default 60 000). */
  readyTimeoutMs?: number;
  /** File receiving the server's stdout and stderr (default: a temp file, deleted by a clean `stop()`). */
  logFile?: string;
}

/** A running chat server process. */
export interface ServerProcess {
  /** HTTP/WebSocket port on 127.0.0.1. */
  readonly port: number;
  readonly pid: number;
  /** `ws://127.0.0.1:<port>/`. */
  readonly wsUrl: string;
  /** `http://127.0.0.1:<port>`. */
  readonly httpUrl: string;
  /** Where stdout/stderr go. */
  readonly logFile: string;
  /** Resident set size of the process now, bytes (VmRSS), or 0 if gone. */
  rssBytes(): number;
  /** CPU time (user + system) the process has used so far, seconds (0 if gone). */
  cpuSeconds(): number;
  /** True while the process runs. */
  alive(): boolean;
  /** Send `signal` (default SIGTERM), wait up to `timeoutMs` (default 15 000) then SIGKILL. Resolves true on a clean exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<boolean>;
}

/** VmRSS of `pid` in bytes from /proc (0 when unreadable). */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * CPU time (utime + stime) of `pid` and of its live child processes (the cluster
 * server's workers), in seconds from /proc/PID/stat (0 when unreadable; assumes 100 ticks/s).
 */
export function cpuSecondsOf(pid: number): number {
  const own = statOf(pid);
  if (!own) return 0;
  let total = own.cpu;
  try {
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d) || Number(d) === pid) continue;
      const st = statOf(Number(d));
      if (st && st.ppid === pid) total += st.cpu;
    }
  } catch {
    // /proc unreadable: own time only
  }
  return total;
}

function statOf(pid: number): { ppid: number; cpu: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, ppid 4, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / 100 };
  } catch {
    return null;
  }
}

/** Last `n` bytes of a file as text ('' when unreadable). */
export function tail(file: string, n = 2000): string {
  try {
    const t = readFileSync(file, 'utf8');
    return t.slice(-n);
  } catch {
    return '';
  }
}

/**
 * Spawn `node --import tsx <entry>` (or plain `node <entry>`) in `cwd` with `env` (over a minimal PATH/HOME env;
 * `HOST` defaults to 127.0.0.1, `PORT` to a free port) and wait for `GET /ready` → 200.
 * Throws, with the log tail, if it exits or is not ready in time (the process is killed).
 */
export async function startServer(env: Record<string, string>, opts: ServerOptions): Promise<ServerProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const entry = opts.entry ?? 'src/server.ts';
  const ownLogDir = opts.logFile ? undefined : mkdtempSync(join(tmpdir(), 'chat-server-'));
  const logFile = opts.logFile ?? join(ownLogDir!, 'server.log');
  const fullEnv: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', HOST: '127.0.0.1', ...env, PORT: String(port) };
  const logFd = openSync(logFile, 'a');
  const nodeArgs = [...(opts.nodeFlags ?? []), ...(opts.loader === 'none' ? [] : ['--import', 'tsx'])];
  const child = spawn(process.execPath, [...nodeArgs, entry], { cwd: opts.cwd, env: fullEnv, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  if (!child.pid) throw new Error(`${entry}: spawn failed`);
  const pid = child.pid;
  track(pid, entry, 'SIGKILL');
  const httpUrl = `http://127.0.0.1:${port}`;
  try {
    await waitUntil(
      `${entry} /ready on port ${port}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited (${child.exitCode ?? child.signalCode}): ${tail(logFile)}`);
        const r = await fetch(`${httpUrl}/ready`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        return r.status === 200;
      },
      opts.readyTimeoutMs ?? 60_000,
      100,
    );
  } catch (err) {
    signalPid(pid, 'SIGKILL');
    await waitExit(pid, 2000);
    untrack(pid);
    throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${tail(logFile)}`);
  }
  return {
    port,
    pid,
    wsUrl: `ws://127.0.0.1:${port}/`,
    httpUrl,
    logFile,
    rssBytes: () => rssOf(pid),
    cpuSeconds: () => cpuSecondsOf(pid),
    alive: () => child.exitCode === null && child.signalCode === null,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) {
      if (!isAlive(pid)) {
        untrack(pid);
        if (ownLogDir) rmSync(ownLogDir, { recursive: true, force: true });
        return child.exitCode === 0;
      }
      signalPid(pid, signal);
      const clean = await waitExit(pid, timeoutMs);
      untrack(pid);
      if (clean && ownLogDir) rmSync(ownLogDir, { recursive: true, force: true });
      return clean;
    },
  };
}

/**
 * The node options of `npm run start:prod` (the `--…` words between `node` and the entry
 * in package.json, after an `exec`), so that benchmarks run the build exactly as
 * production does. Throws when the script does not run node: silently dropping the flags
 * once made the bench measure another configuration (the memory ratio 1.0 → 1.5).
 */
export function prodNodeFlags(repoRoot: string): string[] {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  const words = (pkg.scripts?.['start:prod'] ?? '').trim().split(/\s+/);
  if (words[0] === 'exec') words.shift();
  if (words[0] !== 'node') throw new Error(`package.json start:prod does not run node: ${JSON.stringify(pkg.scripts?.['start:prod'])}`);
  return words.slice(1).filter((w) => w.startsWith('--'));
}
