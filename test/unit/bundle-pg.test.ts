/**
 * The production build (scripts/lib/bundle.ts) drops pg's Cloudflare Workers check: on
 * Node 20 (no `navigator`) it constructs a `Response`, which loads Node's fetch (undici),
 * http2 and worker_threads, about 10 MB of RSS in every server process (session 17; the
 * bench's base RSS target is 60 MB).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleServer } from '../../scripts/lib/bundle.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dir = `.tmp/test-bundle-pg-${process.pid}`;
afterAll(() => rmSync(join(root, dir), { recursive: true, force: true }));

describe('production bundle of pg', () => {
  it('has no Cloudflare check, and loading pg loads neither undici nor http2', async () => {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(
      join(root, dir, 'entry.ts'),
      "import pg from 'pg';\nvoid pg.Client;\nprocess.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => /http2|undici/.test(m))));\n",
    );
    await bundleServer(root, { probe: `${dir}/entry.ts` }, `${dir}/out`);
    const code = readdirSync(join(root, dir, 'out'))
      .filter((f) => f.endsWith('.mjs'))
      .map((f) => readFileSync(join(root, dir, 'out', f), 'utf8'))
      .join('\n');
    expect(code).toContain('pg-native'); // pg is in the bundle
    expect(code).not.toContain('Cloudflare-Workers');
    const loaded = JSON.parse(execFileSync(process.execPath, [join(root, dir, 'out', 'probe.mjs')], { encoding: 'utf8' }));
    expect(loaded).toEqual([]);
  }, 60_000);
});
