/**
 * A real server for integration tests: port 0 on 127.0.0.1, a private database (see
 * db.ts), fixed test secrets, and helpers to seed users, mint tokens and connect
 * authenticated clients.
 */
import { randomBytes } from 'node:crypto';
import { createApp, type App } from '../../src/app.ts';
import { jwtKey } from '../../src/auth/keys.ts';
import { signToken, type SignOptions } from '../../src/auth/tokens.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { addFollows, upsertUsers, type DevUser } from '../../src/store/devData.ts';
import { TestClient } from './client.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';

/** Test JWT secret (base64 of 48 random bytes per run) and encryption key. */
export const TEST_JWT_SECRET = randomBytes(48).toString('base64');
export const TEST_ENC_KEY = randomBytes(32).toString('hex');

/** A running test server. */
export interface TestServer {
  app: App;
  port: number;
  url: string;
  database: TestDatabase;
  /** Sign a token for `userId` with the server's secret. */
  token(userId: string, opts?: SignOptions): string;
  /** Connect (unauthenticated). */
  connect(opts?: { headers?: Record<string, string>; localAddress?: string }): Promise<TestClient>;
  /** Connect and authenticate as `userId`; resolves the client after `auth_success`. */
  login(userId: string, opts?: SignOptions): Promise<TestClient>;
  /** Create users (username `u<id>` unless given). */
  users(...users: (string | DevUser)[]): Promise<void>;
  /** Follow edges [follower, followee]. */
  follow(...edges: [string, string][]): Promise<void>;
  /** Stop the server and drop its database. */
  close(): Promise<void>;
}

/** Environment overrides (Config env names → values) on top of test defaults. */
export type EnvOverrides = Record<string, string | undefined>;

/** Start a server with test defaults and `env` overrides (PROTOCOL setting names). */
export async function startServer(env: EnvOverrides = {}, opts: { database?: TestDatabase; logLevel?: string } = {}): Promise<TestServer> {
  const database = opts.database ?? (await createTestDatabase());
  const cfg: Config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: database.url,
    DATA_DIR: 'memory://',
    EMBEDDED_DATABASE: 'true', // on PGlite (no TEST_DATABASE_URL) with the test secrets
    JWT_SECRET: TEST_JWT_SECRET,
    JWT_SECRET_ENCODING: 'base64',
    CHAT_ENCRYPTION_KEY: TEST_ENC_KEY,
    LOG_LEVEL: 'error',
    RELATION_CACHE_MS: '0',
    METRICS_CACHE_MS: '0', // tests read /metrics right after what they count
    MESSAGE_RATE_LIMIT: '1000',
    ACTION_RATE_LIMIT: '1000',
    READ_RATE_LIMIT: '10000',
    RECEIPT_RATE_LIMIT: '10000',
    DB_POOL_SIZE: '4',
    ...env,
  });
  const app = await createApp(cfg, { logger: createLogger(opts.logLevel ?? 'error', { silent: !process.env.TEST_LOGS }) });
  const port = await app.listen();
  const url = `ws://127.0.0.1:${port}`;
  const key = jwtKey(cfg.jwtSecret, cfg.jwtSecretEncoding);
  const clients: TestClient[] = [];
  const s: TestServer = {
    app,
    port,
    url,
    database,
    token: (userId, o) => signToken(key, userId, o),
    async connect(o) {
      const c = await TestClient.connect(url, o);
      clients.push(c);
      return c;
    },
    async login(userId, o) {
      const c = await s.connect();
      const r = await c.request({ type: 'authenticate', token: s.token(userId, o) });
      if (r.type !== 'auth_success') throw new Error(`login ${userId} failed: ${JSON.stringify(r)}`);
      return c;
    },
    async users(...users) {
      await upsertUsers(
        app.db,
        users.map((u) => (typeof u === 'string' ? { id: u, username: `u${u}`, firstName: `First${u}`, lastName: `Last${u}` } : u)),
      );
    },
    async follow(...edges) {
      await addFollows(app.db, edges);
    },
    async close() {
      await Promise.all(clients.map((c) => c.close().catch(() => {})));
      await app.shutdown(200).catch(() => {});
      await database.drop();
    },
  };
  return s;
}

/** Resolve after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
