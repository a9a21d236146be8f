/**
 * Composition root: builds every part from a {@link Config} and nothing else
 * (DESIGN "Layers and folders"). `createApp` resolves a started-but-not-listening app;
 * `listen` binds the port; `shutdown` drains.
 */
import cluster from 'node:cluster';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { jwtKey } from './auth/keys.ts';
import { TokenVerifier } from './auth/verifier.ts';
import { createChatServices, type ChatServices } from './chat/index.ts';
import { PresenceEvents } from './chat/presenceEvents.ts';
import type { Config } from './config.ts';
import { BodyCipher } from './crypto/cipher.ts';
import { loadOrCreateDevSecrets } from './crypto/devSecrets.ts';
import type { Bus } from './fanout/bus.ts';
import { createDistribution } from './fanout/index.ts';
import type { IpConnectionCounter } from './gateway/admission.ts';
import { coreHandlers, groupHandlers, type Handler } from './gateway/dispatch.ts';
import { Gateway, type GatewayHooks } from './gateway/gateway.ts';
import { httpHandler } from './http/routes.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { Metrics } from './observability/metrics.ts';
import { countingHits, type RateLimits } from './policy/rateLimits.ts';
import { RelationPolicy } from './policy/relations.ts';
import type { Presence } from './presence/presence.ts';
import { coreCommands, FrameDecoder, type CommandSpec } from './protocol/inbound.ts';
import { groupCommands } from './protocol/inboundGroups.ts';
import type { Db } from './store/db.ts';
import { seedDemo } from './store/devData.ts';
import { createStores, insertConcurrency, type Stores } from './store/index.ts';
import { applyDevSchema, migrate } from './store/migrate.ts';
import { createPgDb, type DbObserver, type PoolStats } from './store/pgDb.ts';

/** Longest an HTTP request (an upgrade included) may take to send its headers, ms. */
const HTTP_HEADERS_TIMEOUT_MS = 10_000;
/** Longest a whole plain HTTP request may take (/live, /ready, /health, /metrics), ms. */
const HTTP_REQUEST_TIMEOUT_MS = 15_000;

/** Version reported by /health. */
export const VERSION = '0.1.0';

/** Extension points used by later modules (groups, scale-out) and tests. */
export interface AppOptions {
  logger?: Logger;
  /** Replace the bus (cluster / Redis). */
  bus?: Bus;
  presence?: Presence;
  limits?: RateLimits;
  ipCounter?: IpConnectionCounter;
  /** Extra Redis health for /ready and /health (undefined: no Redis). */
  redisHealthy?: () => boolean | undefined;
}

/** A built service. */
export interface App {
  cfg: Config;
  logger: Logger;
  db: Db;
  stores: Stores;
  chat: ChatServices;
  gateway: Gateway;
  server: Server;
  metrics: Metrics;
  /** Bind HOST:PORT; resolves the bound port. */
  listen(): Promise<number>;
  /** Drain (PROTOCOL §2.3 1001) within `timeoutMs`, then close everything. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** Thrown for a configuration the service refuses to start with (message names the variable). */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/**
 * With no database configured, whether the embedded one may be used (EMBEDDED_DATABASE;
 * audit 8, F2: a deployment whose DATABASE_URL was missing or misspelt ran on PGlite on the
 * container's disk, its users 1-3 logging in as the demo users, with /ready 200).
 * @throws StartupError naming the variables when it may not
 */
function checkEmbedded(cfg: Config): void {
  if (!cfg.embedded || cfg.embeddedDatabase === 'true') return;
  const secrets = [cfg.jwtSecret && 'JWT_SECRET', cfg.encryptionKey && 'CHAT_ENCRYPTION_KEY', cfg.encryptionKeys?.length && 'CHAT_ENCRYPTION_KEYS'].filter((x): x is string => typeof x === 'string');
  if (cfg.embeddedDatabase === 'false') {
    throw new StartupError('no database configured (DATABASE_URL or DB_HOST) and EMBEDDED_DATABASE=false: set DATABASE_URL');
  }
  if (secrets.length > 0) {
    throw new StartupError(
      `no database configured (DATABASE_URL or DB_HOST) but ${secrets.join(' and ')} ${secrets.length > 1 ? 'are' : 'is'} set: refusing to run on the embedded database; set DATABASE_URL, or EMBEDDED_DATABASE=true to use the embedded one with these secrets`,
    );
  }
}

async function openDb(cfg: Config, logger: Logger, observer: DbObserver): Promise<Db & { poolStats?(): PoolStats }> {
  if (cfg.embedded) {
    logger.warn('embedded database (PGlite): for development only; set DATABASE_URL for PostgreSQL', { dataDir: cfg.dataDir.startsWith('memory://') ? 'memory' : cfg.dataDir });
    const dir = cfg.dataDir.startsWith('memory://') ? undefined : join(cfg.dataDir, 'pgdata');
    // Loaded only for the embedded database (PGlite is large and unused with PostgreSQL).
    const { createPgliteDb } = await import('./store/pgliteDb.ts');
    const db = await createPgliteDb(dir, { logger });
    await applyDevSchema(db);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users_auth');
    // Demo users only with the development secrets: with a real JWT_SECRET, user 1 of the
    // real backend would log in as alice.
    if (Number(rows[0]?.n) === 0 && !cfg.jwtSecret) {
      await seedDemo(db);
      logger.info('embedded database seeded with demo users alice (1), bob (2), carol (3)');
    }
    return db;
  }
  return createPgDb(
    {
      connectionString: cfg.databaseUrl,
      host: cfg.dbHost,
      port: cfg.dbPort,
      database: cfg.dbName,
      user: cfg.dbUser,
      password: cfg.dbPass,
      ssl: cfg.dbSsl,
      poolSize: cfg.dbPoolSize,
      statementTimeoutMs: cfg.dbStatementTimeoutMs,
      connectTimeoutMs: cfg.dbConnectTimeoutMs,
      idleTimeoutMs: cfg.dbIdleTimeoutMs,
      preparedStatements: cfg.dbPreparedStatements,
      observer,
    },
    logger,
  );
}

/** Secrets: required (≥ 32 bytes) on a configured database; generated once in DATA_DIR on the embedded one. */
function resolveSecrets(cfg: Config, logger: Logger): { jwtSecret: string; jwtEncoding: 'base64' | 'utf8'; cipher: BodyCipher } {
  let jwtSecret = cfg.jwtSecret;
  let jwtEncoding = cfg.jwtSecretEncoding;
  let encKey = cfg.encryptionKey;
  if (cfg.embedded && (!jwtSecret || (!encKey && !cfg.encryptionKeys?.length))) {
    const { secrets, created } = loadOrCreateDevSecrets(cfg.dataDir);
    if (!jwtSecret) {
      jwtSecret = secrets.jwtSecret;
      jwtEncoding = 'base64';
    }
    if (!encKey && !cfg.encryptionKeys?.length) encKey = secrets.encryptionKey;
    logger.warn(`using development secrets ${created ? 'generated now in' : 'from'} ${cfg.dataDir} (embedded database only)`);
  }
  try {
    jwtKey(jwtSecret, jwtEncoding);
    return { jwtSecret: jwtSecret!, jwtEncoding, cipher: BodyCipher.fromConfig(encKey, cfg.encryptionKeys) };
  } catch (err) {
    throw new StartupError((err as Error).message);
  }
}

/**
 * Build the service: secrets, database (+ migrations), stores, policy, fan-out, chat
 * services, gateway, HTTP. Throws {@link StartupError} for missing or weak secrets, and
 * the database error when migrations cannot run.
 */
export async function createApp(cfg: Config, opts: AppOptions = {}): Promise<App> {
  const logger = opts.logger ?? createLogger(cfg.logLevel);
  checkEmbedded(cfg);
  const secrets = resolveSecrets(cfg, logger);
  let gateway: Gateway | undefined;
  let db: (Db & { poolStats?(): PoolStats }) | undefined;
  const metrics = new Metrics({
    connections: () => gateway?.connectionCount() ?? 0,
    users: () => gateway?.userCount() ?? 0,
    pool: () => db?.poolStats?.(),
  });
  db = await openDb(cfg, logger, metrics.db);
  const applied = await migrate(db, { logger });
  if (applied.length) logger.info('migrations applied', { applied });
  const insertInFlight = insertConcurrency(cfg.dbInsertConcurrency, cluster.isWorker, cfg.clusterWorkers);
  const stores = createStores(db, insertInFlight);
  const dist = await createDistribution(cfg, logger, secrets.cipher, { busRefused: (reason) => metrics.busRefused(reason) });
  const limits = countingHits(opts.limits ?? dist.limits, (kind) => metrics.rateLimitHit(kind));
  const presence = opts.presence ?? dist.presence;
  const bus = opts.bus ?? dist.bus;
  const relations = new RelationPolicy(stores.relations, cfg.followPolicy, cfg.relationCacheMs);
  const chat = createChatServices({
    stores,
    cipher: secrets.cipher,
    relations,
    limits,
    bus,
    presence,
    settings: cfg,
    logger,
    onUnreadable: (reason) => metrics.bodyUnreadable(reason),
  });
  const verifier = new TokenVerifier(
    { key: jwtKey(secrets.jwtSecret, secrets.jwtEncoding), clockToleranceS: cfg.jwtClockToleranceS, issuer: cfg.jwtIssuer, audience: cfg.jwtAudience },
    stores.users,
    logger,
  );
  const specs: Record<string, CommandSpec> = { ...coreCommands(cfg), ...groupCommands(cfg) };
  const handlers: Record<string, Handler> = { ...coreHandlers(chat), ...groupHandlers(chat) };
  const presenceEvents = new PresenceEvents(chat.deps, chat.presence, cfg.offlineGraceMs);
  const hooks: GatewayHooks = {
    connectionClosed: (connId) => chat.typing.connectionClosed(connId),
    userConnected: (userId, username, first) => presenceEvents.userConnected(userId, username, first),
    userDisconnected: (userId, username, last) => presenceEvents.userDisconnected(userId, username, last),
  };
  gateway = new Gateway({
    settings: cfg,
    logger,
    decoder: new FrameDecoder(specs),
    verifier,
    handlers,
    presence,
    bus,
    limits,
    ipCounter: opts.ipCounter ?? dist.ipCounter,
    metrics,
    hooks,
  });
  const gw = gateway;
  await bus.start((d) => {
    gw.registry.deliver(d);
    if (d.publishedAt !== undefined) metrics.deliveryLag(Date.now() - d.publishedAt);
  });
  const startedAt = Date.now();
  // Requests must arrive whole within HTTP_HEADERS_TIMEOUT_MS (Node's default, 60 s checked
  // every 30 s, let a client hold half-sent requests ~90 s): with the per-address cap on
  // unfinished sockets (gateway/handshakes.ts) this bounds what slowloris can hold.
  const server = createServer(
    { headersTimeout: HTTP_HEADERS_TIMEOUT_MS, requestTimeout: HTTP_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    httpHandler({
      startedAt,
      version: VERSION,
      draining: () => gw.isDraining(),
      dbHealthy: () => db.ping(Math.min(2000, cfg.dbConnectTimeoutMs)),
      redisHealthy: opts.redisHealthy ?? (() => dist.redisHealthy()),
      readyRequiresRedis: cfg.readyRequiresRedis,
      connections: () => gw.connectionCount(),
      users: () => gw.userCount(),
      metrics: dist.aggregateMetrics?.(metrics.registry) ?? (() => metrics.text()),
      metricsToken: cfg.metricsToken,
      metricsReuseMs: cfg.metricsCacheMs,
    }),
  );
  server.keepAliveTimeout = 5000;
  gw.attach(server);

  // Soft-deleted groups are purged after GROUP_PURGE_DAYS (PROTOCOL §7); hourly sweep.
  const purgeTimer = setInterval(() => {
    chat.groups.purge().then(
      (ids) => ids.length && logger.info('purged deleted groups', { count: ids.length }),
      (err) => logger.warn('group purge failed', { err: (err as Error).message }),
    );
  }, 3_600_000);
  purgeTimer.unref();

  let stopped = false;
  return {
    cfg,
    logger,
    db,
    stores,
    chat,
    gateway: gw,
    server,
    metrics,
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(cfg.port, cfg.host, () => {
          server.off('error', reject);
          const port = (server.address() as AddressInfo).port;
          logger.info('listening', { port, host: cfg.host, database: cfg.embedded ? 'embedded' : 'postgresql', bus: bus.kind, ...(cfg.embedded ? {} : { insertInFlight }) });
          resolve(port);
        });
      }),
    async shutdown(timeoutMs = cfg.drainTimeoutMs) {
      if (stopped) return;
      stopped = true;
      clearInterval(purgeTimer);
      await gw.drain(timeoutMs);
      gw.close();
      chat.typing.close();
      // Before the bus, Redis and the database close: persists lastSeen of users this process was the last to hold (§8).
      await presenceEvents.shutdown();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await bus.stop().catch(() => {});
      await dist.stop().catch(() => {});
      await db.close().catch(() => {});
    },
  };
}
