/**
 * `npm run token -- <userId> [--ttl 1h] [--jti ID]`: print an HS256 JWT for a user, signed
 * with JWT_SECRET (from the environment / .env) or, when unset, the embedded database's
 * development secret in DATA_DIR. For trying the server with any WebSocket client.
 */
import dotenv from 'dotenv';
import { jwtKey } from '../src/auth/keys.ts';
import { parseTtl, signToken } from '../src/auth/tokens.ts';
import { loadConfig } from '../src/config.ts';
import { readDevSecrets } from '../src/crypto/devSecrets.ts';

dotenv.config({ quiet: true });
const args = process.argv.slice(2);
const userId = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (!userId || !/^\d+$/.test(userId)) {
  process.stderr.write('usage: npm run token -- <userId> [--ttl 1h] [--jti ID]\n');
  process.exit(2);
}
const cfg = loadConfig();
let secret = cfg.jwtSecret;
let encoding = cfg.jwtSecretEncoding;
if (!secret) {
  const dev = readDevSecrets(cfg.dataDir);
  if (!dev) {
    process.stderr.write(`JWT_SECRET is not set and ${cfg.dataDir} has no development secrets yet: run \`npm start\` once first.\n`);
    process.exit(1);
  }
  secret = dev.jwtSecret;
  encoding = 'base64';
}
const token = signToken(jwtKey(secret, encoding), userId, {
  ttlS: parseTtl(opt('--ttl') ?? '1h'),
  jti: opt('--jti'),
  issuer: cfg.jwtIssuer,
  audience: cfg.jwtAudience,
});
process.stdout.write(token + '\n');
