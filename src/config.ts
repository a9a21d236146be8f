/**
 * Configuration: environment (+ `.env`) → typed, validated {@link Config}.
 *
 * Every setting lives in {@link SETTINGS}, one row each: its environment name, default,
 * parser and meaning. `.env.example` is generated from that table
 * (`tsx scripts/gen-env-example.ts`), and a unit test keeps the two in step.
 * A bad value throws {@link ConfigError} naming the variable and the expected form.
 */
import { cpus } from 'node:os';

/** Thrown when a variable has a value outside its expected form; the message names both. */
export class ConfigError extends Error {
  /** @param variable environment variable name; @param expected human description of the form */
  constructor(
    readonly variable: string,
    readonly expected: string,
    value: string,
  ) {
    super(`${variable}: expected ${expected}, got ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`);
    this.name = 'ConfigError';
  }
}

type Parser<T> = { parse(raw: string, name: string): T; form: string };

/**
 * Largest delay a Node.js timer takes, ms (2^31 - 1, about 24.8 days; a larger one fires
 * after 1 ms with a TimeoutOverflowWarning) and PostgreSQL's largest statement_timeout.
 * Every `*_MS` setting that feeds a timer or statement_timeout is bounded by it or less (EDIT_WINDOW_MS, only compared with a message's age, is not) (audit 8, F6: SESSION_RECHECK_MS=3e9 made
 * 900 queries a second per connection, DRAIN_TIMEOUT_MS=2^31-1 drained for 1 ms).
 */
export const TIMER_MAX_MS = 2_147_483_647;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

const int = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => ({
  form: `an integer in ${min}..${max}`,
  parse(raw, name) {
    const n = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(name, `an integer in ${min}..${max}`, raw);
    }
    return n;
  },
});
const bool: Parser<boolean> = {
  form: 'true or false',
  parse(raw, name) {
    const v = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off', ''].includes(v)) return false;
    throw new ConfigError(name, 'true or false', raw);
  },
};
const str: Parser<string> = { form: 'a string', parse: (raw) => raw };
/**
 * A URL with one of `schemes` (e.g. `postgres:`). A bad value is reported with its scheme
 * only: these URLs carry passwords, and a ConfigError is printed (audit 8, F12: a garbage
 * REDIS_URL failed later, after migrations, as "Invalid URL" naming no variable).
 */
/**
 * A PostgreSQL connection string as pg takes it: `postgres://` or `postgresql://` (host may
 * be empty with `?host=/socket/dir`), `socket:/dir?db=…`, or `/socket/dir dbname`. Only the
 * scheme is checked (pg parses the rest, and WHATWG URL refuses forms pg accepts: review 9).
 */
const pgUrl: Parser<string> = {
  form: 'a PostgreSQL connection string (postgres://, postgresql://, socket:, or /socket/dir dbname)',
  parse(raw, name) {
    const v = raw.trim();
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(v)?.[1]?.toLowerCase();
    if (v.startsWith('/') || scheme === 'postgres' || scheme === 'postgresql' || scheme === 'socket') return raw;
    throw new ConfigError(name, pgUrl.form, scheme ? `${scheme}:…` : '(not a connection string; value not shown)');
  },
};
const url = (...schemes: string[]): Parser<string> => ({
  form: `a URL (${schemes.map((x) => x + '//').join(', ')})`,
  parse(raw, name) {
    let u: URL | undefined;
    try {
      u = new URL(raw);
    } catch {
      u = undefined;
    }
    if (!u || !schemes.includes(u.protocol)) {
      throw new ConfigError(name, `a URL (${schemes.map((x) => x + '//').join(', ')})`, u ? `${u.protocol}//…` : '(not a URL; value not shown)');
    }
    return raw;
  },
});
const oneOf = <T extends string>(...values: T[]): Parser<T> => ({
  form: `one of ${values.join(', ')}`,
  parse(raw, name) {
    const v = raw.trim() as T;
    if (!values.includes(v)) throw new ConfigError(name, `one of ${values.join(', ')}`, raw);
    return v;
  },
});
const list: Parser<string[]> = {
  form: 'a comma-separated list',
  parse: (raw) => raw.split(',').map((s) => s.trim()).filter(Boolean),
};

interface Setting<T> {
  env: string;
  default: T | undefined;
  parser: Parser<T>;
  doc: string;
  secret?: boolean;
}
const s = <T>(env: string, def: T | undefined, parser: Parser<T>, doc: string, secret = false): Setting<T> => ({
  env,
  default: def,
  parser,
  doc,
  secret,
});

/**
 * Every setting the service reads. Keys are the {@link Config} field names; `env` is the
 * environment variable. Source of each default: PROTOCOL.md (section named in `doc`) or
 * the old server's variable names (DB_*).
 */
export const SETTINGS = {
  port: s('PORT', 3001, int(0, 65535), 'HTTP and WebSocket port (PROTOCOL §1); 0 picks a free port'),
  host: s('HOST', '0.0.0.0', str, 'Listen address'),
  databaseUrl: s<string>('DATABASE_URL', undefined, pgUrl, 'PostgreSQL URL; unset (and no DB_HOST) = embedded PGlite in DATA_DIR'),
  embeddedDatabase: s('EMBEDDED_DATABASE', 'auto' as 'auto' | 'true' | 'false', oneOf('auto', 'true', 'false'), 'With no DATABASE_URL or DB_HOST: auto = the embedded PGlite only when JWT_SECRET and CHAT_ENCRYPTION_KEY(S) are unset too (development; else refuse to start: a deployment whose database variable is missing or misspelt), true = the embedded one anyway, false = refuse to start'),
  dbHost: s<string>('DB_HOST', undefined, str, 'PostgreSQL host (old server name; used when DATABASE_URL is unset)'),
  dbPort: s('DB_PORT', 5432, int(1, 65535), 'PostgreSQL port'),
  dbName: s('DB_NAME', 'postgres', str, 'PostgreSQL database'),
  dbUser: s('DB_USER', 'postgres', str, 'PostgreSQL user'),
  dbPass: s<string>('DB_PASS', undefined, str, 'PostgreSQL password', true),
  dbSsl: s('DB_SSL', false, bool, 'Use TLS to PostgreSQL (rejectUnauthorized stays on)'),
  dbPoolSize: s('DB_POOL_SIZE', 10, int(1, 1000), 'Connections in the pg pool, per process'),
  dbStatementTimeoutMs: s('DB_STATEMENT_TIMEOUT_MS', 5000, int(0, TIMER_MAX_MS), 'statement_timeout for every query, ms (0 = none)'),
  dbConnectTimeoutMs: s('DB_CONNECT_TIMEOUT_MS', 2000, int(1, 600_000), 'Bound on connecting and on waiting for a free pool connection, ms'),
  dbIdleTimeoutMs: s('DB_IDLE_TIMEOUT_MS', 30000, int(0, DAY_MS), 'Idle pool connection lifetime, ms'),
  dbInsertConcurrency: s('DB_INSERT_CONCURRENCY', 0, int(0, 64), 'Message-insert statements in flight at once per process (group commit); 0 = 4 in one process, and under cluster-server.ts 4 / CLUSTER_WORKERS rounded (at least 1), so a host keeps about 4'),
  dbPreparedStatements: s('DB_PREPARED_STATEMENTS', true, bool, 'Run the hot connect-path lookups and the single-message insert as named prepared statements (parsed once per connection); false behind a pooler without prepared-statement support'),
  dataDir: s('DATA_DIR', './data', str, 'Embedded database and development secrets directory; one process at a time (pgdata.lock: a dead local PID\'s lock is taken over, another host\'s once not refreshed for 120 s)'),
  jwtSecret: s<string>('JWT_SECRET', undefined, str, 'REQUIRED with a configured database: HS256 key shared with the auth backend (≥ 32 bytes once decoded; PROTOCOL §3); embedded: generated in DATA_DIR', true),
  jwtSecretEncoding: s('JWT_SECRET_ENCODING', 'base64' as 'base64' | 'utf8', oneOf('base64', 'utf8'), 'How JWT_SECRET is decoded: base64 (as the Java backend) or utf8'),
  jwtIssuer: s<string>('JWT_ISSUER', undefined, str, 'Required `iss` claim when set'),
  jwtAudience: s<string>('JWT_AUDIENCE', undefined, str, 'Required `aud` claim when set'),
  jwtClockToleranceS: s('JWT_CLOCK_TOLERANCE_S', 30, int(0, 3600), 'Leeway for exp/nbf/iat, seconds'),
  encryptionKey: s<string>('CHAT_ENCRYPTION_KEY', undefined, str, 'REQUIRED with a configured database (or CHAT_ENCRYPTION_KEYS): AES-256 key, 32 bytes as base64 or hex (key id "k1"); embedded: generated in DATA_DIR', true),
  encryptionKeys: s<string[]>('CHAT_ENCRYPTION_KEYS', undefined, list, 'Several keys "id1:key1,id2:key2": the first encrypts, all decrypt. Replaces CHAT_ENCRYPTION_KEY, whose bodies carry key id k1: list it here as k1:<key> when rotating (with it still set and not listed so, the start is refused)', true),
  logLevel: s('LOG_LEVEL', 'info' as 'error' | 'warn' | 'info' | 'debug', oneOf('error', 'warn', 'info', 'debug'), 'Log level'),
  maxPayloadBytes: s('MAX_PAYLOAD_BYTES', 65536, int(1024, 16 * 1024 * 1024), 'Largest inbound frame, bytes; larger → close 1009 (§1)'),
  wsCompression: s('WS_COMPRESSION', false, bool, 'permessage-deflate (§1)'),
  allowedOrigins: s<string[]>('ALLOWED_ORIGINS', [], list, 'Exact Origin allow-list; empty = any; no Origin header is always allowed (§1)'),
  maxConnectionsPerIp: s('MAX_CONNECTIONS_PER_IP', 200, int(1), 'Concurrent connections per client IP (§1)'),
  connectionRatePerIp: s('CONNECTION_RATE_PER_IP', 120, int(1), 'New connections per client IP per minute (§1)'),
  trustProxy: s('TRUST_PROXY', 0, int(0, 10), 'Proxy hops of X-Forwarded-For to trust (0 = ignore the header) (§1)'),
  maxMessageLength: s('MAX_MESSAGE_LENGTH', 5000, int(1, 100000), 'Longest message content, Unicode code points (§2)'),
  protocolErrorLimit: s('PROTOCOL_ERROR_LIMIT', 20, int(1), 'BAD_REQUEST/UNKNOWN_TYPE errors per 60 s before close 4400 (§2.2)'),
  editWindowMs: s('EDIT_WINDOW_MS', 300000, int(0), 'How long a message may be edited, ms; 0 = unlimited (§2.2)'),
  authTimeoutMs: s('AUTH_TIMEOUT_MS', 30000, int(1, HOUR_MS), 'Unauthenticated connections close 4408 after this, ms (§3)'),
  singleSession: s('SINGLE_SESSION', false, bool, 'A new login closes the older connections with 4409 (§3)'),
  sessionRecheckMs: s('SESSION_RECHECK_MS', 60000, int(100, DAY_MS), 'Revoked jti / deleted user re-check interval, ms (§3)'),
  sessionRecheckGraceMs: s('SESSION_RECHECK_GRACE_MS', 0, int(0, DAY_MS), 'While the re-check query fails, a session whose last successful check is older than this is closed 1011 (fail closed: a revoked token cannot be told apart), ms; 0 = 3 × SESSION_RECHECK_MS'),
  heartbeatIntervalMs: s('HEARTBEAT_INTERVAL_MS', 25000, int(100, HOUR_MS), 'WebSocket ping interval, ms (§3)'),
  heartbeatTimeoutMs: s('HEARTBEAT_TIMEOUT_MS', 10000, int(50, HOUR_MS), 'Pong deadline after a ping, ms; must be below HEARTBEAT_INTERVAL_MS (§3)'),
  maxConnectionsPerUser: s('MAX_CONNECTIONS_PER_USER', 10, int(1), 'Devices per user; more → close 4429 (§3)'),
  sendQueueLimitBytes: s('SEND_QUEUE_LIMIT_BYTES', 1048576, int(1024), 'Per-connection queued outbound bytes before close 4503 (§2.3)'),
  messageRateLimit: s('MESSAGE_RATE_LIMIT', 30, int(1), 'Sends per user per window (§4)'),
  messageRateWindowMs: s('MESSAGE_RATE_WINDOW_MS', 60000, int(1000, DAY_MS), 'Rate-limit window for sends, actions, reads and receipts, ms (§4)'),
  actionRateLimit: s('ACTION_RATE_LIMIT', 60, int(1), 'Edits, deletes and reactions per user per window (§4)'),
  readRateLimit: s('READ_RATE_LIMIT', 1200, int(1), 'Reads (history, conversation and group lists, sync, presence, start_conversation, token refreshes) per user per window; bounds the database work one account can ask for (docs/PROTOCOL-NOTES.md)'),
  receiptRateLimit: s('RECEIPT_RATE_LIMIT', 3000, int(1), 'mark_message_read and message_delivered frames per user per window (docs/PROTOCOL-NOTES.md)'),
  typingRateLimit: s('TYPING_RATE_LIMIT', 20, int(1), 'Typing frames per user per TYPING_RATE_WINDOW_MS; excess dropped (§4)'),
  typingRateWindowMs: s('TYPING_RATE_WINDOW_MS', 10000, int(1000, DAY_MS), 'Typing rate-limit window, ms (§4)'),
  typingTimeoutMs: s('TYPING_TIMEOUT_MS', 6000, int(100, HOUR_MS), 'A typist silent this long produces isTyping:false, ms (§6)'),
  relationCacheMs: s('RELATION_CACHE_MS', 5000, int(0, DAY_MS), 'Follow/block/user cache lifetime, ms; 0 = no cache (§5)'),
  followPolicy: s('FOLLOW_POLICY', 'sender_follows' as 'sender_follows' | 'either' | 'none', oneOf('sender_follows', 'either', 'none'), 'Who may DM whom (§5)'),
  maxGroupSize: s('MAX_GROUP_SIZE', 1000, int(2, 100000), 'Upper bound of a group\'s maxMembers (§7)'),
  defaultGroupMaxMembers: s('GROUP_DEFAULT_MAX_MEMBERS', 50, int(2, 100000), 'maxMembers when create_group omits it (§7)'),
  maxGroupsPerUser: s('MAX_GROUPS_PER_USER', 500, int(1, 100000), 'Most groups one user may be in (soft-deleted ones count until purged); create_group and add_group_member past it → GROUP_FULL, memberships already past it are kept (§7, docs/PROTOCOL-NOTES.md)'),
  groupPurgeDays: s('GROUP_PURGE_DAYS', 30, int(0), 'Soft-deleted groups are purged after this many days (§7)'),
  offlineGraceMs: s('OFFLINE_GRACE_MS', 10000, int(0, DAY_MS), 'Delay before user_offline after the last connection closes, ms (§8)'),
  syncRetentionDays: s('SYNC_RETENTION_DAYS', 30, int(1), 'Oldest sync cursor accepted, days (§9)'),
  readyRequiresRedis: s('READY_REQUIRES_REDIS', false, bool, '/ready is 503 while Redis is down (§10)'),
  metricsToken: s<string>('METRICS_TOKEN', undefined, str, 'Bearer token required by /metrics when set (§10)', true),
  cpuProfileFile: s<string>('CPU_PROFILE_FILE', undefined, str, 'Write a V8 CPU profile of this process to this path at shutdown (cluster workers: PATH.w<worker id>); for benchmarks, README Performance'),
  metricsCacheMs: s('METRICS_CACHE_MS', 1000, int(0, 60000), 'How long one /metrics render answers every scrape, ms (0: only scrapes at the same moment share one); bounds what a flood of /metrics costs'),
  redisUrl: s<string>('REDIS_URL', undefined, url('redis:', 'rediss:'), 'Redis for cross-host fan-out, presence and limits; unset = none'),
  redisKeyPrefix: s('REDIS_KEY_PREFIX', 'chat:', str, 'Prefix of every Redis key and channel'),
  busEncryption: s('BUS_ENCRYPTION', true, bool, 'Seal frames published to Redis (AES-256-GCM, key derived from the primary CHAT_ENCRYPTION_KEY) and refuse unsealed ones; false publishes plaintext and accepts both (only for upgrading from a build without it: docs/scaling.md)'),
  busGapResyncMs: s('BUS_GAP_RESYNC_MS', 10000, int(0, 600000), 'When Redis lost live deliveries for connections here (this instance\'s subscriber reconnected, or another instance\'s publishes to their users failed), close them 4503 (reconnect and sync, §2.3) at random within this many ms (at least 1 ms per user told); 0 = never (clients catch up at their next reconnect): docs/scaling.md'),
  bus: s('BUS', 'auto' as 'auto' | 'local' | 'cluster' | 'redis', oneOf('auto', 'local', 'cluster', 'redis'), 'Fan-out: auto = redis with REDIS_URL, cluster under the cluster server, else local'),
  clusterWorkers: s('CLUSTER_WORKERS', Math.max(1, cpus().length), int(1, 256), 'Workers forked by cluster-server.ts (default: CPU count)'),
  presenceHeartbeatMs: s('PRESENCE_HEARTBEAT_MS', 5000, int(100, 600000), 'Redis presence: each instance refreshes its liveness this often, ms (§8)'),
  presenceTtlMs: s('PRESENCE_TTL_MS', 15000, int(300, 3600000), 'Redis presence: an instance silent this long is reaped and its users go offline, ms (§8)'),
  drainTimeoutMs: s('DRAIN_TIMEOUT_MS', 10000, int(0, HOUR_MS), 'SIGTERM: every connection closed 1001 within this bound (exit at most 2 s later), ms'),
};

type Settings = typeof SETTINGS;
/** The validated configuration: one field per row of {@link SETTINGS}, plus derived values. */
export type Config = {
  [K in keyof Settings]: Settings[K] extends Setting<infer T> ? (Settings[K]['default'] extends undefined ? T | undefined : T) : never;
} & {
  /** true when no database is configured: PGlite in `dataDir`. */
  embedded: boolean;
};

/**
 * Build a Config from an environment map (default: `process.env`, after `.env` is loaded
 * by the caller). Throws {@link ConfigError} on the first bad value. Secrets are not
 * checked for presence here: {@link ../app.ts} requires them on a configured database and
 * generates development ones on the embedded database.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const out: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as [string, Setting<unknown>][]) {
    const raw = env[setting.env];
    out[key] = raw === undefined || raw === '' ? setting.default : setting.parser.parse(raw, setting.env);
  }
  const cfg = out as Config;
  cfg.embedded = !cfg.databaseUrl && !cfg.dbHost;
  if (cfg.defaultGroupMaxMembers > cfg.maxGroupSize) {
    throw new ConfigError('GROUP_DEFAULT_MAX_MEMBERS', `at most MAX_GROUP_SIZE (${cfg.maxGroupSize})`, String(cfg.defaultGroupMaxMembers));
  }
  if (cfg.heartbeatTimeoutMs >= cfg.heartbeatIntervalMs) {
    throw new ConfigError('HEARTBEAT_TIMEOUT_MS', `less than HEARTBEAT_INTERVAL_MS (${cfg.heartbeatIntervalMs})`, String(cfg.heartbeatTimeoutMs));
  }
  if (cfg.bus === 'redis' && !cfg.redisUrl) throw new ConfigError('BUS', 'REDIS_URL to be set when BUS=redis', 'redis');
  return cfg;
}

/**
 * Settings that are valid but work against each other; the entry point logs each at
 * start (a warning, not a refusal). Today: a statement timeout (DB_STATEMENT_TIMEOUT_MS,
 * 0 = none) not below DRAIN_TIMEOUT_MS on a configured database, so a command stuck in the
 * database at SIGTERM is cut off by the drain unanswered (its client resends with its
 * `clientMessageId`; its commit may still land) instead of being answered
 * SERVICE_UNAVAILABLE before the 1001 close (PROTOCOL §2.3).
 * @param cfg a loaded Config
 * @returns one message per conflict, naming the variables; empty when none; never throws
 */
export function configWarnings(cfg: Config): string[] {
  const out: string[] = [];
  const stmt = cfg.dbStatementTimeoutMs;
  if (!cfg.embedded && (stmt === 0 || stmt >= cfg.drainTimeoutMs)) {
    out.push(
      `DB_STATEMENT_TIMEOUT_MS (${stmt === 0 ? 'none' : stmt}) is not below DRAIN_TIMEOUT_MS (${cfg.drainTimeoutMs}): ` +
        'a command stuck in the database at shutdown is closed 1001 unanswered instead of answered SERVICE_UNAVAILABLE; set it lower',
    );
  }
  if (cfg.presenceTtlMs < 2 * cfg.presenceHeartbeatMs) {
    out.push(`PRESENCE_TTL_MS (${cfg.presenceTtlMs}) is below 2 × PRESENCE_HEARTBEAT_MS (${cfg.presenceHeartbeatMs}): it is raised to ${2 * cfg.presenceHeartbeatMs}`);
  }
  if (!cfg.metricsToken && !['127.0.0.1', '::1', 'localhost'].includes(cfg.host)) {
    out.push(`METRICS_TOKEN is unset and HOST is ${cfg.host}: /metrics answers anyone who reaches this port (restrict it at the proxy, as nginx.conf does, or set METRICS_TOKEN)`);
  }
  return out;
}

/**
 * {@link loadConfig} for process entry points: a {@link ConfigError} is printed to
 * stderr (variable and expected form) and the process exits with status 1.
 */
export function loadConfigOrExit(env: Record<string, string | undefined> = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // One JSON line like every log line (the logger needs LOG_LEVEL, which may be what is wrong).
      process.stderr.write(JSON.stringify({ level: 'error', message: `configuration error: ${err.message}`, variable: err.variable, timestamp: new Date().toISOString() }) + '\n');
      process.exit(1);
    }
    throw err;
  }
}

/** Render `.env.example`: every setting with its default and meaning (secrets blank). */
export function renderEnvExample(): string {
  const lines = ['# Chat Server configuration. Generated from src/config.ts (tsx scripts/gen-env-example.ts).', '# Every variable is optional unless noted; the value shown is the default.', ''];
  for (const setting of Object.values(SETTINGS) as Setting<unknown>[]) {
    lines.push(`# ${setting.doc}. Form: ${setting.parser.form}.`);
    const def = setting.env === 'CLUSTER_WORKERS' ? undefined : setting.default;
    const shown = def === undefined ? '' : Array.isArray(def) ? def.join(',') : String(def);
    lines.push(`${def === undefined ? '# ' : ''}${setting.env}=${shown}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Render the README configuration table (markdown): variable, default, meaning. */
export function renderConfigTable(): string {
  const rows = ['| variable | default | meaning |', '|---|---|---|'];
  for (const setting of Object.values(SETTINGS) as Setting<unknown>[]) {
    const def = setting.env === 'CLUSTER_WORKERS' ? 'CPU count' : setting.default;
    const shown = def === undefined ? '—' : Array.isArray(def) ? (def.length ? def.join(',') : '(empty)') : String(def);
    rows.push(`| \`${setting.env}\` | ${shown === '—' || shown === '(empty)' || shown === 'CPU count' ? shown : '`' + shown + '`'} | ${setting.doc.replace(/\|/g, '\\|')} |`);
  }
  return rows.join('\n');
}
