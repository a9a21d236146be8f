/**
 * Configuration (PROTOCOL §1–§3 settings, DESIGN "config.ts"): the defaults are the
 * protocol's, a bad value stops the service with a message naming the variable, and a
 * missing or weak JWT secret on a configured database refuses to start.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createApp, StartupError } from '../../src/app.ts';
import { decodeJwtSecret } from '../../src/auth/keys.ts';
import { ConfigError, configWarnings, loadConfig, SETTINGS, TIMER_MAX_MS } from '../../src/config.ts';
import { createLogger } from '../../src/observability/logger.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('defaults', () => {
  it('are the values PROTOCOL.md names', () => {
    const cfg = loadConfig({});
    expect(cfg).toMatchObject({
      port: 3001,
      maxPayloadBytes: 65536,
      wsCompression: false,
      allowedOrigins: [],
      maxConnectionsPerIp: 200,
      connectionRatePerIp: 120,
      trustProxy: 0,
      protocolErrorLimit: 20,
      jwtSecretEncoding: 'base64',
      jwtClockToleranceS: 30,
      authTimeoutMs: 30000,
      sessionRecheckMs: 60000,
      heartbeatIntervalMs: 25000,
      heartbeatTimeoutMs: 10000,
      maxConnectionsPerUser: 10,
      singleSession: false,
      sendQueueLimitBytes: 1048576,
      messageRateLimit: 30,
      messageRateWindowMs: 60000,
      actionRateLimit: 60,
      maxMessageLength: 5000,
      editWindowMs: 300000,
      relationCacheMs: 5000,
      followPolicy: 'sender_follows',
      offlineGraceMs: 10000,
      syncRetentionDays: 30,
      readyRequiresRedis: false,
      embedded: true,
    });
    expect(cfg.jwtIssuer).toBeUndefined();
    expect(cfg.jwtAudience).toBeUndefined();
    expect(cfg.metricsToken).toBeUndefined();
  });

  it('parses good values', () => {
    const cfg = loadConfig({
      ALLOWED_ORIGINS: 'https://a.example, https://b.example,',
      TRUST_PROXY: '2',
      SINGLE_SESSION: 'true',
      WS_COMPRESSION: 'false',
      JWT_SECRET_ENCODING: 'utf8',
      DATABASE_URL: 'postgres://u@db.internal/chat',
      MAX_PAYLOAD_BYTES: '1024',
    });
    expect(cfg).toMatchObject({ allowedOrigins: ['https://a.example', 'https://b.example'], trustProxy: 2, singleSession: true, wsCompression: false, jwtSecretEncoding: 'utf8', embedded: false, maxPayloadBytes: 1024 });
  });
});

describe('a bad value stops with a message naming the variable', () => {
  const bad: [string, string][] = [
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['MAX_PAYLOAD_BYTES', '100'],
    ['MAX_PAYLOAD_BYTES', '64k'],
    ['AUTH_TIMEOUT_MS', '-5'],
    ['AUTH_TIMEOUT_MS', '1.5'],
    ['AUTH_TIMEOUT_MS', '0'],
    ['HEARTBEAT_INTERVAL_MS', '10'],
    ['HEARTBEAT_TIMEOUT_MS', 'soon'],
    ['SESSION_RECHECK_MS', '1e3'],
    ['MAX_CONNECTIONS_PER_USER', '0'],
    ['MAX_CONNECTIONS_PER_IP', 'many'],
    ['CONNECTION_RATE_PER_IP', '0'],
    ['TRUST_PROXY', '11'],
    ['TRUST_PROXY', 'true'],
    ['PROTOCOL_ERROR_LIMIT', '0'],
    ['JWT_CLOCK_TOLERANCE_S', '-1'],
    ['WS_COMPRESSION', 'maybe'],
    ['SINGLE_SESSION', 'sometimes'],
    ['READY_REQUIRES_REDIS', '2'],
    ['JWT_SECRET_ENCODING', 'hex'],
    ['FOLLOW_POLICY', 'everyone'],
    ['LOG_LEVEL', 'verbose'],
    ['BUS', 'kafka'],
  ];
  for (const [variable, value] of bad) {
    it(`${variable}=${value}`, () => {
      let err: unknown;
      try {
        loadConfig({ [variable]: value });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as Error).message).toContain(variable);
      expect((err as Error).message).toContain(JSON.stringify(value));
    });
  }

  it('cross-field rules name the variable too', () => {
    expect(() => loadConfig({ BUS: 'redis' })).toThrow(/BUS.*REDIS_URL/);
    expect(() => loadConfig({ MAX_GROUP_SIZE: '10', GROUP_DEFAULT_MAX_MEMBERS: '20' })).toThrow(/GROUP_DEFAULT_MAX_MEMBERS/);
  });

  it('the process exits 1 with the variable named on stderr', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'chat-cfg-'));
    try {
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        execFile(
          join(root, 'node_modules/.bin/tsx'),
          [join(root, 'src/server.ts')],
          { cwd, timeout: 60_000, env: { PATH: process.env.PATH, HOME: process.env.HOME, MAX_PAYLOAD_BYTES: 'lots', PORT: '0' } },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout + stderr }),
        );
      });
      expect(r.code).toBe(1);
      // One JSON line, as every log line (audit 8, F13).
      const line = JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, unknown>;
      expect(line).toMatchObject({ level: 'error', variable: 'MAX_PAYLOAD_BYTES' });
      expect(line.message).toContain('MAX_PAYLOAD_BYTES');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 90_000); // a cold tsx start of the whole service; slow on a busy machine
});

describe('URLs and cross-checks (audit 8, F12)', () => {
  it('DATABASE_URL and REDIS_URL must be URLs of their schemes; the error names the variable and never shows the password', () => {
    for (const [env, bad] of [
      ['DATABASE_URL', 'garbage'],
      ['DATABASE_URL', 'http://u:s3cretpw@db:5432/chat'],
      ['REDIS_URL', 'garbage'],
      ['REDIS_URL', 'http://:s3cretpw@redis:6379'],
    ] as const) {
      let err: unknown;
      try {
        loadConfig({ [env]: bad });
      } catch (e) {
        err = e;
      }
      expect(err, `${env}=${bad}`).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(new RegExp(`^${env}: expected a (URL|PostgreSQL connection string)`));
      expect((err as Error).message).not.toContain('s3cretpw');
    }
    expect(loadConfig({ DATABASE_URL: 'postgres://u:pw@db:5432/chat', REDIS_URL: 'rediss://:pw@redis:6380' })).toMatchObject({ databaseUrl: 'postgres://u:pw@db:5432/chat', redisUrl: 'rediss://:pw@redis:6380' });
    // Forms pg's own parser takes (WHATWG URL refuses the first two).
    for (const ok of ['postgresql://db/chat', 'postgresql://u:pw@/chat?host=/var/run/postgresql', '/var/run/postgresql chat', 'socket:/var/run/postgresql?db=chat']) {
      expect(loadConfig({ DATABASE_URL: ok }).databaseUrl).toBe(ok);
    }
  });

  it('warns when PRESENCE_TTL_MS is under twice PRESENCE_HEARTBEAT_MS, and when /metrics is open on a non-loopback HOST', () => {
    expect(configWarnings(loadConfig({ HOST: '127.0.0.1', PRESENCE_TTL_MS: '300', PRESENCE_HEARTBEAT_MS: '5000' })).join('\n')).toMatch(/PRESENCE_TTL_MS \(300\) is below 2 × PRESENCE_HEARTBEAT_MS/);
    expect(configWarnings(loadConfig({ HOST: '0.0.0.0' })).join('\n')).toMatch(/METRICS_TOKEN is unset and HOST is 0\.0\.0\.0/);
    expect(configWarnings(loadConfig({ HOST: '127.0.0.1' }))).toEqual([]);
    expect(configWarnings(loadConfig({ HOST: '0.0.0.0', METRICS_TOKEN: 't'.repeat(32) }))).toEqual([]);
  });
});

describe('every *_MS setting is bounded by the largest Node.js timer (audit 8, F6)', () => {
  // EDIT_WINDOW_MS is only compared with a message's age: a 30-day window must stay possible (review 9).
  const timers = Object.values(SETTINGS)
    .map((x) => x.env)
    .filter((e) => e.endsWith('_MS') && e !== 'EDIT_WINDOW_MS');
  it('EDIT_WINDOW_MS, not a timer, takes 30 days', () => {
    expect(loadConfig({ EDIT_WINDOW_MS: String(30 * 86_400_000) }).editWindowMs).toBe(30 * 86_400_000);
  });
  it(`${timers.length} settings: ${TIMER_MAX_MS + 1} ms (a 1 ms timer in Node.js) → ConfigError naming the variable; ${TIMER_MAX_MS} at most is the bound`, () => {
    expect(timers.length).toBeGreaterThan(10);
    for (const env of timers) {
      expect(() => loadConfig({ [env]: String(TIMER_MAX_MS + 1) }), env).toThrow(ConfigError);
      expect(() => loadConfig({ [env]: String(TIMER_MAX_MS + 1) }), env).toThrow(new RegExp(`^${env}:`));
    }
  });
});

describe('JWT_SECRET (PROTOCOL §3: at least 32 key bytes, else no start)', () => {
  it('decodes base64 (standard or URL-safe) and utf8; refuses fewer than 32 bytes and non-base64', () => {
    const raw = randomBytes(32);
    expect(decodeJwtSecret(raw.toString('base64'), 'base64').equals(raw)).toBe(true);
    expect(decodeJwtSecret(raw.toString('base64url'), 'base64').equals(raw)).toBe(true);
    expect(decodeJwtSecret('k'.repeat(32), 'utf8').length).toBe(32);
    expect(() => decodeJwtSecret(randomBytes(31).toString('base64'), 'base64')).toThrow(/JWT_SECRET.*32/);
    expect(() => decodeJwtSecret('k'.repeat(31), 'utf8')).toThrow(/JWT_SECRET/);
    expect(() => decodeJwtSecret('this is not base64 but long enough to be a key!', 'base64')).toThrow(/JWT_SECRET/);
    expect(() => decodeJwtSecret(undefined, 'base64')).toThrow(/JWT_SECRET/);
  });

  it('createApp refuses a missing or short secret on a configured database (before touching it)', async () => {
    const logger = createLogger('error', { silent: true });
    const base = { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', CHAT_ENCRYPTION_KEY: randomBytes(32).toString('hex') };
    for (const JWT_SECRET of [undefined, randomBytes(16).toString('base64')]) {
      const p = createApp(loadConfig({ ...base, JWT_SECRET }), { logger });
      await expect(p).rejects.toBeInstanceOf(StartupError);
      await expect(p).rejects.toThrow(/JWT_SECRET/);
    }
  });
});

describe('EMBEDDED_DATABASE (audit 8, F2: a missing or misspelt DATABASE_URL must not run production on PGlite)', () => {
  const logger = createLogger('error', { silent: true });
  const secrets = { JWT_SECRET: randomBytes(32).toString('base64'), CHAT_ENCRYPTION_KEY: randomBytes(32).toString('hex'), DATA_DIR: 'memory://' };

  it('auto (default): no database configured but production secrets set → StartupError naming them and the way out', async () => {
    for (const env of [secrets, { JWT_SECRET: secrets.JWT_SECRET, DATA_DIR: 'memory://' }, { DATABSE_URL: 'postgres://typo', ...secrets }]) {
      const p = createApp(loadConfig(env), { logger });
      await expect(p).rejects.toBeInstanceOf(StartupError);
      await expect(p).rejects.toThrow(/no database configured \(DATABASE_URL or DB_HOST\) but JWT_SECRET.*EMBEDDED_DATABASE=true/);
    }
  });

  it('false: no database configured → StartupError, even without secrets', async () => {
    await expect(createApp(loadConfig({ EMBEDDED_DATABASE: 'false', DATA_DIR: 'memory://' }), { logger })).rejects.toThrow(/EMBEDDED_DATABASE=false/);
  });

  it('true: the embedded database with those secrets, and no demo users (user 1 of the real backend must not log in as alice)', async () => {
    const app = await createApp(loadConfig({ ...secrets, EMBEDDED_DATABASE: 'true' }), { logger });
    try {
      const { rows } = await app.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users_auth');
      expect(Number(rows[0]!.n)).toBe(0);
    } finally {
      await app.shutdown(100);
    }
  });

  it('auto without secrets (npm start on a bare machine): the embedded database with the demo users', async () => {
    const app = await createApp(loadConfig({ DATA_DIR: 'memory://' }), { logger });
    try {
      const { rows } = await app.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users_auth');
      expect(Number(rows[0]!.n)).toBe(3);
    } finally {
      await app.shutdown(100);
    }
  });
});
