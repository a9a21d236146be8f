/**
 * The bench runs the build with the node options of `npm run start:prod`
 * (scripts/lib/server.ts prodNodeFlags): they must be found in the script as it is now
 * (`exec node …`). Once the `exec` made them silently empty, and the bench measured a
 * server without them (its memory ratio went from 1.0 to 1.5).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { prodNodeFlags } from '../../scripts/lib/server.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('prodNodeFlags', () => {
  it("reads this repository's start:prod flags", () => {
    expect(prodNodeFlags(root)).toEqual(['--max-semi-space-size=8', '--no-allocation-site-pretenuring']);
  });

  it('with or without exec; a script that does not run node is an error, not an empty list', () => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-flags-'));
    try {
      const write = (cmd: string) => writeFileSync(join(dir, 'package.json'), JSON.stringify({ scripts: { 'start:prod': cmd } }));
      write('node --a=1 x.mjs');
      expect(prodNodeFlags(dir)).toEqual(['--a=1']);
      write('exec node --b x.mjs');
      expect(prodNodeFlags(dir)).toEqual(['--b']);
      write('tsx x.ts');
      expect(() => prodNodeFlags(dir)).toThrow(/does not run node/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
