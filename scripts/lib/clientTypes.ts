/**
 * Type declarations for the browser bundle of the client SDK (README "Client SDK"), so a
 * TypeScript frontend that takes `dist/client/` gets the same types as one that imports
 * `src/client/` directly.
 *
 * Written beside the bundle:
 * - `types/**.d.ts`: tsc's declarations of `src/client/` (and the `src/protocol/` types it
 *   names), compiled as a browser consumer compiles them: `lib` es2022 + dom, no `@types/node`;
 * - `chat-client.d.mts`: the bundle's declarations, re-exporting `types/client/index.js`;
 * - `package.json`: `type: module` and `exports` with `types`, so the folder is an installable
 *   package (`npm install path/to/dist/client`, or `npm pack` it).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';

/** Compiler options for the declarations: what a browser consumer of the SDK has. */
function declarationOptions(repoRoot: string, typesDir: string): ts.CompilerOptions {
  return {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    strict: true,
    noUncheckedIndexedAccess: true,
    declaration: true,
    emitDeclarationOnly: true,
    // The sources import each other as `./x.ts` (tsc keeps that in declarations: see
    // jsSpecifiers).
    allowImportingTsExtensions: true,
    rootDir: join(repoRoot, 'src'),
    outDir: typesDir,
  };
}

/**
 * Relative `.ts` import specifiers of a declaration file as `.js`, which every TypeScript
 * version and module resolution resolves to the `.d.ts` beside it (tsc ≥ 5 also resolves
 * `.ts`, older ones do not).
 * @param text declaration file text
 * @returns the text with `'./x.ts'` / `'../x/y.ts'` specifiers ending in `.js`
 */
export function jsSpecifiers(text: string): string {
  return text.replace(/(['"])(\.{1,2}\/[^'"]*)\.ts\1/g, '$1$2.js$1');
}

/**
 * Compile the SDK's declarations into `outDir` (absolute, or relative to `repoRoot`) and
 * write its `chat-client.d.mts` and `package.json` (see the file comment). `outDir/types`
 * is replaced.
 * @param repoRoot the repository root
 * @param outDir the folder of `chat-client.mjs` (`dist/client`)
 * @returns the paths written (absolute)
 * @throws Error listing tsc's diagnostics when the SDK does not type-check as a browser
 *   consumer sees it (for example, a Node-only type used in `src/client/`)
 */
export function emitClientDeclarations(repoRoot: string, outDir: string): string[] {
  const out = resolve(repoRoot, outDir);
  const typesDir = join(out, 'types');
  rmSync(typesDir, { recursive: true, force: true });
  const written: string[] = [];
  const host = ts.createCompilerHost(declarationOptions(repoRoot, typesDir));
  host.writeFile = (file, text) => {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, jsSpecifiers(text));
    written.push(file);
  };
  const program = ts.createProgram([join(repoRoot, 'src/client/index.ts')], declarationOptions(repoRoot, typesDir), host);
  const result = program.emit();
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics];
  if (diagnostics.length > 0 || result.emitSkipped) {
    const text = ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => repoRoot, getNewLine: () => '\n' });
    throw new Error(`client SDK declarations failed:\n${text}`);
  }
  const entry = join(out, 'chat-client.d.mts');
  writeFileSync(entry, "/** Declarations of chat-client.mjs, the chat protocol's client SDK (README \"Client SDK\"). */\nexport * from './types/client/index.js';\n");
  const manifest = join(out, 'package.json');
  const pkg = {
    name: 'chat-client',
    version: '0.1.0',
    description: 'Client SDK of the chat protocol (browser bundle of src/client/), built by npm run build',
    type: 'module',
    exports: { '.': { types: './chat-client.d.mts', default: './chat-client.mjs' } },
    files: ['chat-client.mjs', 'chat-client.mjs.map', 'chat-client.d.mts', 'types'],
  };
  writeFileSync(manifest, JSON.stringify(pkg, null, 2) + '\n');
  return [...written, entry, manifest];
}
