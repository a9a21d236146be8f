/**
 * Development secrets for the embedded database only: when JWT_SECRET or
 * CHAT_ENCRYPTION_KEY is unset, random ones are generated once and kept in
 * `DATA_DIR/dev-secrets.json` (mode 0600) so tokens and stored messages survive restarts.
 * Never used with a configured database (there both are required).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The generated secrets: JWT key as base64 (JWT_SECRET_ENCODING=base64), AES key as hex. */
export interface DevSecrets {
  jwtSecret: string;
  encryptionKey: string;
}

/** Path of the secrets file in `dataDir`. */
export const devSecretsPath = (dataDir: string): string => join(dataDir, 'dev-secrets.json');

/** Read the secrets file, or undefined when there is none (or `dataDir` is in memory). */
export function readDevSecrets(dataDir: string): DevSecrets | undefined {
  if (dataDir.startsWith('memory://')) return undefined;
  const p = devSecretsPath(dataDir);
  if (!existsSync(p)) return undefined;
  const v = JSON.parse(readFileSync(p, 'utf8')) as DevSecrets;
  if (typeof v.jwtSecret !== 'string' || typeof v.encryptionKey !== 'string') throw new Error(`${p}: not a secrets file`);
  return v;
}

/** Read the secrets file or create it with fresh random secrets. Resolves them and whether they were created now. */
export function loadOrCreateDevSecrets(dataDir: string): { secrets: DevSecrets; created: boolean } {
  const existing = readDevSecrets(dataDir);
  if (existing) return { secrets: existing, created: false };
  const secrets = { jwtSecret: randomBytes(48).toString('base64'), encryptionKey: randomBytes(32).toString('hex') };
  if (!dataDir.startsWith('memory://')) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(devSecretsPath(dataDir), JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  }
  return { secrets, created: true };
}
