/**
 * Regenerate `.env.example` and the README configuration table (between the
 * `<!-- config:start -->` / `<!-- config:end -->` markers) from src/config.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigTable, renderEnvExample } from '../src/config.ts';

writeFileSync(new URL('../.env.example', import.meta.url), renderEnvExample());
const readme = new URL('../README.md', import.meta.url);
const text = readFileSync(readme, 'utf8');
const out = text.replace(/<!-- config:start -->[\s\S]*<!-- config:end -->/, `<!-- config:start -->\n${renderConfigTable()}\n<!-- config:end -->`);
writeFileSync(readme, out);
process.stdout.write('.env.example and README configuration table written\n');
