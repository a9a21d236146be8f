/**
 * `npm run token -- <userId> [--ttl 1h] [--jti ID]`: print an HS256 JWT for a user, signed
 * with JWT_SECRET (from the environment / .env) or, when unset, the embedded database's
 * development secret in DATA_DIR. For trying the server with any WebSocket client.
 */
import { parseTtl } from '../src/auth/tokens.ts';
import { devSigner } from './dev-token.ts';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const userId = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
if (!userId || !/^\d+$/.test(userId)) {
  process.stderr.write('usage: npm run token -- <userId> [--ttl 1h] [--jti ID]\n');
  process.exit(2);
}
try {
  process.stdout.write(devSigner()(userId, { ttlS: parseTtl(opt('--ttl') ?? '1h'), jti: opt('--jti') }) + '\n');
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
