/**
 * The one esbuild configuration for running the server on plain `node`: ESM, packages
 * external, code splitting (so lazily imported PGlite and the Redis client stay out of
 * start-up), chunks beside the entries. `outdir` must be two levels below the repo root
 * (like `src/<dir>/`) so the server's `../../sql/` resolves.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

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
    packages: 'external',
    logLevel: 'warning',
  });
}
