/**
 * `npm run build`: bundle the server and the cluster server into dist/node/*.mjs (see
 * scripts/lib/bundle.ts), to run on plain `node` without the tsx loader (about 30 MB less
 * RSS, faster start): `npm run start:prod`, `npm run start:cluster:prod`.
 */
import { bundleServer } from './lib/bundle.ts';

await bundleServer(new URL('..', import.meta.url).pathname, { server: 'src/server.ts', 'cluster-server': 'cluster-server.ts' }, 'dist/node');
process.stdout.write('built dist/node/server.mjs and dist/node/cluster-server.mjs\n');
