/**
 * `--bundle`: build the server entries with the production esbuild configuration
 * (../lib/bundle.ts: minified, dependencies bundled) so the bench runs them on plain
 * `node` as `npm run start:prod` does, without the tsx loader's ~30 MB of RSS. Output goes
 * to `<repo>/.tmp/bench-build/` (gitignored), two levels below the repo root like
 * `src/<dir>/`, so the server's `new URL('../../sql/', import.meta.url)` still finds `sql/`.
 */
import { bundleServer } from '../lib/bundle.ts';

/**
 * Bundle several entries in one build (shared chunks); resolves their output paths
 * relative to `repoRoot`, in order. A bundled `cluster-server` forks the `server` bundle
 * beside it, as `npm run start:cluster:prod` does.
 */
export async function bundleEntries(repoRoot: string, entries: readonly string[]): Promise<string[]> {
  const names = entries.map((e) => e.replace(/^.*\//, '').replace(/\.ts$/, ''));
  await bundleServer(repoRoot, Object.fromEntries(names.map((n, i) => [n, entries[i]!])), '.tmp/bench-build');
  return names.map((n) => `.tmp/bench-build/${n}.mjs`);
}
