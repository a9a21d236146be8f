/**
 * The one esbuild configuration for running the server on plain `node`: ESM, minified,
 * the npm dependencies bundled in (fewer module records and much less retained source
 * text: base RSS about 74 -> 59 MB idle on PostgreSQL), code splitting (so the lazily
 * imported Redis client stays out of start-up), chunks beside the entries.
 *
 * Left external, resolved from `node_modules` at run time: the native addons `ws` loads
 * optionally (`bufferutil`, `utf-8-validate`), PGlite (it loads its WebAssembly and data
 * files relative to its own package) and `pg-native` (optional, not installed). CommonJS
 * dependencies get a real `require` through a `createRequire` banner. Source maps (`.mjs.map`)
 * are written beside the output. `outdir` must be two
 * levels below the repo root (like `src/<dir>/`) so the server's `../../sql/` resolves.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';

/** Packages that stay outside the bundle (see above). */
const BUNDLE_EXTERNAL = ['bufferutil', 'utf-8-validate', '@electric-sql/pglite', '@electric-sql/pglite/*', 'pg-native'];

/** The start of pg's Cloudflare Workers check in `pg/lib/stream.js` (pg 8.x). */
const PG_CLOUDFLARE_CHECK = 'function isCloudflareRuntime() {';

/**
 * pg decides at load time whether it runs in Cloudflare Workers. On Node 20, which has no
 * `navigator`, that check constructs a `Response`, which loads Node's fetch (undici), with
 * http2 and worker_threads: about 10 MB of RSS (5 anonymous, 5 file-backed) for a check
 * that is always false here (measured, session 17: bare node 43.7 MB, after
 * `new Response(null)` 53.7 MB). This plugin makes the check return false in the build.
 * Node 21+ has `navigator` and never reaches it. Fails the build if pg's source no longer
 * holds the check, so a pg upgrade cannot silently drop it.
 */
const pgNodeOnly: Plugin = {
  name: 'pg-node-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]stream\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      if (!src.includes(PG_CLOUDFLARE_CHECK)) throw new Error(`${args.path}: no "${PG_CLOUDFLARE_CHECK}" (pg changed; review scripts/lib/bundle.ts)`);
      return { contents: src.replace(PG_CLOUDFLARE_CHECK, `${PG_CLOUDFLARE_CHECK}\n  return false; // chat-server build: Node only (scripts/lib/bundle.ts)`), loader: 'js' };
    });
  },
};

/** Bundle `entryPoints` (output name → entry path, relative to `repoRoot`) into `outdir` as `<name>.mjs`. */
export async function bundleServer(repoRoot: string, entryPoints: Record<string, string>, outdir: string): Promise<void> {
  mkdirSync(join(repoRoot, outdir), { recursive: true });
  await build({
    absWorkingDir: repoRoot,
    entryPoints,
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: BUNDLE_EXTERNAL,
    minify: true,
    // Names are not kept (esbuild's keepNames wraps every function in a defineProperty
    // call: +2.2 MB steady RSS). Stack traces carry minified names; the linked source maps
    // beside the build translate them: run with NODE_OPTIONS=--enable-source-maps.
    sourcemap: 'linked',
    banner: { js: "import { createRequire as __chatCreateRequire } from 'node:module'; const require = __chatCreateRequire(import.meta.url);" },
    plugins: [pgNodeOnly],
    logLevel: 'warning',
  });
}

/**
 * Bundle the client SDK (src/client/index.ts) for browsers: one ESM file, ES2020, no Node
 * built-ins (esbuild's `browser` platform fails the build if the SDK imports one).
 * @param repoRoot the repository root
 * @param outfile output path (relative to `repoRoot`, or absolute); omitted: nothing is written and the
 *   code is returned
 * @returns the bundled code (UTF-8)
 */
export async function bundleClient(repoRoot: string, outfile?: string): Promise<string> {
  const r = await build({
    absWorkingDir: repoRoot,
    entryPoints: ['src/client/index.ts'],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2020',
    minify: false,
    logLevel: 'silent',
    write: outfile !== undefined,
    ...(outfile ? { outfile, sourcemap: 'linked' as const } : {}),
  });
  return outfile ? readFileSync(resolve(repoRoot, outfile), 'utf8') : r.outputFiles![0]!.text;
}
