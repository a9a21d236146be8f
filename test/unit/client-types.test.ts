/**
 * The browser bundle's declarations (scripts/lib/clientTypes.ts): a TypeScript frontend
 * that installs `dist/client/` as a package type-checks against it, under the two module
 * resolutions frontends use (`bundler`, `nodenext`), with no `@types/node`; and a wrong
 * call is a compile error, so the declarations are the SDK's real types, not `any`.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleClient } from '../../scripts/lib/bundle.ts';
import { emitClientDeclarations } from '../../scripts/lib/clientTypes.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
let dir = '';

/** A consumer that uses the SDK as README "Client SDK" shows. */
const GOOD = `
import { ChatClient, ClientError, type ServerFrames } from 'chat-client';
const chat = new ChatClient({ url: 'wss://chat.example.com/', token: async (refresh: boolean) => (refresh ? 'a' : 'b') });
chat.on('new_private_message', (f: ServerFrames['new_private_message']) => { const id: string = f.message.id; void id; });
chat.onSync((page) => { const cursor: string = page.cursor; void cursor; });
export async function send(): Promise<string> {
  try {
    const ack = await chat.request('send_private_message', { recipientId: '2', content: 'Hi' });
    return ack.messageId;
  } catch (e) {
    if (e instanceof ClientError && e.code === 'RATE_LIMITED') return String(e.retryAfter);
    throw e;
  }
}
`;

/** Three mistakes the types must catch: a misspelt field, an unknown command, a wrong reply field. */
const BAD = `
import { ChatClient } from 'chat-client';
const chat = new ChatClient({ url: 'wss://chat.example.com/', token: 't' });
export async function send(): Promise<void> {
  await chat.request('send_private_message', { recipientId: '2', contnet: 'Hi' });
  await chat.request('send_privat_message', { recipientId: '2', content: 'Hi' });
  const ack = await chat.request('get_conversations', {});
  const n: number = ack.conversations;
  void n;
}
`;

/** Type-check `source` as consumer file `name` with `moduleResolution`; returns tsc's messages. */
function check(name: string, source: string, resolution: 'bundler' | 'nodenext'): string[] {
  const file = join(dir, 'app', name);
  writeFileSync(file, source);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: resolution === 'bundler' ? ts.ModuleKind.ESNext : ts.ModuleKind.NodeNext,
    moduleResolution: resolution === 'bundler' ? ts.ModuleResolutionKind.Bundler : ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    strict: true,
    noEmit: true,
  };
  const program = ts.createProgram([file], options);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'chat-client-types-'));
  const pkg = join(dir, 'pkg');
  await bundleClient(ROOT, join(pkg, 'chat-client.mjs'));
  emitClientDeclarations(ROOT, pkg);
  mkdirSync(join(dir, 'app', 'node_modules'), { recursive: true });
  writeFileSync(join(dir, 'app', 'package.json'), JSON.stringify({ name: 'app', type: 'module' }));
  symlinkSync(pkg, join(dir, 'app', 'node_modules', 'chat-client'), 'dir');
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('client SDK declarations', () => {
  it('are an installable package: exports with types, module format ESM', () => {
    const manifest = JSON.parse(readFileSync(join(dir, 'pkg', 'package.json'), 'utf8'));
    expect(manifest.type).toBe('module');
    expect(manifest.exports['.']).toEqual({ types: './chat-client.d.mts', default: './chat-client.mjs' });
    const client = readFileSync(join(dir, 'pkg', 'types', 'client', 'client.d.ts'), 'utf8');
    expect(client).toMatch(/from '\.\/options\.js'/);
    expect(client).not.toMatch(/from '[^']+\.ts'/);
  });

  for (const resolution of ['bundler', 'nodenext'] as const) {
    it(`type-check a consumer under moduleResolution ${resolution}, without @types/node`, () => {
      expect(check(`good-${resolution}.ts`, GOOD, resolution)).toEqual([]);
    }, 60_000);

    it(`reject wrong calls under moduleResolution ${resolution}`, () => {
      const errors = check(`bad-${resolution}.ts`, BAD, resolution).join('\n');
      expect(errors).toMatch(/contnet/);
      expect(errors).toMatch(/send_privat_message/);
      expect(errors).toMatch(/is not assignable to type 'number'/);
    }, 60_000);
  }
});
