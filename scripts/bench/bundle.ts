/**
 * `--bundle`: compile a server entry (TypeScript) into one ESM file with esbuild (the one
 * tsx ships; packages stay external) so the server can run on plain `node`, without the
 * tsx loader's ~30 MB of RSS in the memory figures. Output goes to `<repo>/.tmp/bench-build/`
 * (gitignored), two levels below the repo root like `src/<dir>/`, so the server's
 * `new URL('../../sql/', import.meta.url)` still finds `sql/`.
 */
import { bundleServer } from '../lib/bundle.ts';

/** Bundle `entry` (relative to `repoRoot`); resolves to the output path relative to `repoRoot`. */
export async function bundleEntry(repoRoot: string, entry: string): Promise<string> {
  const name = entry.replace(/^.*\//, '').replace(/\.ts$/, '');
  await bundleServer(repoRoot, { [name]: entry }, '.tmp/bench-build');
  return `.tmp/bench-build/${name}.mjs`;
}
