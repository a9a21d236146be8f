/**
 * `--bundle`: compile a server entry (TypeScript) into one ESM file with esbuild (the one
 * tsx ships; packages stay external) so the server can run on plain `node`, without the
 * tsx loader's ~30 MB of RSS in the memory figures. Output goes to `<repo>/.tmp/bench-build/`
 * (gitignored), two levels below the repo root like `src/<dir>/`, so the server's
 * `new URL('../../sql/', import.meta.url)` still finds `sql/`.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

/** Bundle `entry` (relative to `repoRoot`); resolves to the output path relative to `repoRoot`. */
export async function bundleEntry(repoRoot: string, entry: string): Promise<string> {
  const outDir = join(repoRoot, '.tmp', 'bench-build');
  mkdirSync(outDir, { recursive: true });
  const name = entry.replace(/^.*\//, '').replace(/\.ts$/, '.mjs');
  // Splitting keeps lazily imported packages (PGlite, redis) out of start-up, as in `npm run build`.
  await build({
    absWorkingDir: repoRoot,
    entryPoints: { [name.replace(/\.mjs$/, '')]: entry },
    outdir: outDir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: false,
    logLevel: 'warning',
  });
  return `.tmp/bench-build/${name}`;
}
