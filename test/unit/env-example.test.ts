import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderEnvExample, SETTINGS } from '../../src/config.ts';

describe('.env.example', () => {
  it('is the rendering of the settings table (run: npx tsx scripts/gen-env-example.ts)', () => {
    expect(readFileSync(new URL('../../.env.example', import.meta.url), 'utf8')).toBe(renderEnvExample());
  });
  it('lists every variable', () => {
    const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    for (const s of Object.values(SETTINGS)) expect(text).toMatch(new RegExp(`^(# )?${s.env}=`, 'm'));
  });
});

describe('README configuration table', () => {
  it('is the rendering of the settings table (run: npx tsx scripts/gen-env-example.ts)', async () => {
    const { renderConfigTable } = await import('../../src/config.ts');
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`<!-- config:start -->\n${renderConfigTable()}\n<!-- config:end -->`);
  });
});
