/**
 * `npm run build`: bundle the server and the cluster server into dist/node/*.mjs (see
 * scripts/lib/bundle.ts), to run on plain `node` without the tsx loader (about 30 MB less
 * RSS, faster start): `npm run start:prod`, `npm run start:cluster:prod`; and the client
 * SDK for browsers into dist/client/chat-client.mjs, with its declarations and a package.json
 * (scripts/lib/clientTypes.ts), so dist/client/ installs as a typed package (README "Client SDK").
 */
import { bundleClient, bundleServer } from './lib/bundle.ts';
import { emitClientDeclarations } from './lib/clientTypes.ts';

const root = new URL('..', import.meta.url).pathname;
await bundleServer(root, { server: 'src/server.ts', 'cluster-server': 'cluster-server.ts' }, 'dist/node');
await bundleClient(root, 'dist/client/chat-client.mjs');
emitClientDeclarations(root, 'dist/client');
process.stdout.write('built dist/node/server.mjs, dist/node/cluster-server.mjs and dist/client/ (chat-client.mjs, its .d.mts, package.json)\n');
