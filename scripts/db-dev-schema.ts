/**
 * `npm run db:dev-schema`: create the auth backend's tables (users_auth,
 * user_profile_info, jwt_revocation, user_follows, blocked_relationships) in the
 * configured PostgreSQL (DATABASE_URL or DB_*), for development against a real server.
 * `--seed` also adds the demo users. Never run this against the backend's production database.
 */
import dotenv from 'dotenv';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/observability/logger.ts';
import { seedDemo } from '../src/store/devData.ts';
import { applyDevSchema } from '../src/store/migrate.ts';
import { createPgDb } from '../src/store/pgDb.ts';

dotenv.config({ quiet: true });
const cfg = loadConfig();
if (cfg.embedded) {
  process.stderr.write('Set DATABASE_URL (or DB_HOST…): the embedded database creates these tables by itself.\n');
  process.exit(2);
}
const db = createPgDb(
  { connectionString: cfg.databaseUrl, host: cfg.dbHost, port: cfg.dbPort, database: cfg.dbName, user: cfg.dbUser, password: cfg.dbPass, ssl: cfg.dbSsl, poolSize: 1, statementTimeoutMs: 0, connectTimeoutMs: 5000, idleTimeoutMs: 1000 },
  createLogger('warn'),
);
await applyDevSchema(db);
if (process.argv.includes('--seed')) await seedDemo(db);
await db.close();
process.stdout.write(`backend tables ready${process.argv.includes('--seed') ? ' (demo users seeded)' : ''}\n`);
