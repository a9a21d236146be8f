/**
 * Where headless Chromium is for the client SDK's browser test
 * (test/integration/client-browser.test.ts), shared with `npm test`'s skip banner.
 */
import { existsSync } from 'node:fs';

/** Paths tried in order when CHROMIUM_PATH is not set (Debian's `chromium`, others). */
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/**
 * @param env the environment (CHROMIUM_PATH wins when set)
 * @returns the browser executable's path, or undefined when none is installed
 */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.CHROMIUM_PATH ?? CANDIDATES.find((p) => existsSync(p));
}
