/**
 * Token minting for the developer scripts (`npm run token`, `npm run demo`): signs with
 * JWT_SECRET from the environment / .env or, when unset, the embedded database's
 * development secret in DATA_DIR.
 */
import dotenv from 'dotenv';
import { jwtKey } from '../src/auth/keys.ts';
import { signToken, type SignOptions } from '../src/auth/tokens.ts';
import { loadConfig } from '../src/config.ts';
import { readDevSecrets } from '../src/crypto/devSecrets.ts';

dotenv.config({ quiet: true });

/** Returns a signer for user ids; throws with a helpful message when no secret can be found. */
export function devSigner(): (userId: string, opts?: SignOptions) => string {
  const cfg = loadConfig();
  let secret = cfg.jwtSecret;
  let encoding = cfg.jwtSecretEncoding;
  if (!secret) {
    const dev = readDevSecrets(cfg.dataDir);
    if (!dev) throw new Error(`JWT_SECRET is not set and ${cfg.dataDir} has no development secrets yet: run \`npm start\` once first.`);
    secret = dev.jwtSecret;
    encoding = 'base64';
  }
  const key = jwtKey(secret, encoding);
  return (userId, opts = {}) => signToken(key, userId, { issuer: cfg.jwtIssuer, audience: cfg.jwtAudience, ...opts });
}

/** The server URL for scripts: DEMO_URL, else ws://127.0.0.1:$PORT (default 3001). */
export function serverUrl(): string {
  return process.env.DEMO_URL ?? `ws://127.0.0.1:${process.env.PORT ?? 3001}`;
}
