/**
 * The client SDK's pure parts: the close-code rules (PROTOCOL §2.3), the backoff, the
 * command table's agreement with the server's (so every command the server accepts has a
 * typed reply in the SDK), and that it bundles for browsers without Node built-ins.
 */
import { describe, expect, it } from 'vitest';
import { backoffDelay, onClose, REPLY_TYPES } from '../../src/client/index.ts';
import { coreCommands } from '../../src/protocol/inbound.ts';
import { groupCommands } from '../../src/protocol/inboundGroups.ts';
import { bundleClient } from '../../scripts/lib/bundle.ts';

describe('close codes (§2.3)', () => {
  it('stops on 4400, 4403, 4409, 4429; gets a new token on 4401; reconnects on the rest', () => {
    expect(onClose(4400)).toEqual({ action: 'stop', reason: 'protocol_errors' });
    expect(onClose(4403)).toEqual({ action: 'stop', reason: 'revoked' });
    expect(onClose(4409)).toEqual({ action: 'stop', reason: 'replaced' });
    expect(onClose(4429)).toEqual({ action: 'stop', reason: 'too_many_devices' });
    expect(onClose(4401)).toEqual({ action: 'refresh' });
    for (const code of [1000, 1001, 1006, 1007, 1009, 1011, 4408, 4503, 4999]) expect(onClose(code)).toEqual({ action: 'reconnect' });
  });
});

describe('backoff', () => {
  it('full jitter under a cap that doubles from minDelayMs up to maxDelayMs', () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, {}, top)).toBe(499);
    expect(backoffDelay(3, {}, top)).toBe(3999);
    expect(backoffDelay(10, {}, top)).toBe(29_999);
    expect(backoffDelay(1000, { minDelayMs: 100, maxDelayMs: 1000 }, top)).toBe(999);
    expect(backoffDelay(5, {}, () => 0)).toBe(0);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(i % 12);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(30_000);
    }
  });
});

describe('command table', () => {
  it('has a reply type for every command the server accepts (authenticate is run by the client itself)', () => {
    const limits = { maxMessageLength: 5000, maxGroupSize: 50 };
    const server = Object.keys({ ...coreCommands(limits), ...groupCommands(limits) }).filter((t) => t !== 'authenticate');
    expect(Object.keys(REPLY_TYPES).sort()).toEqual(server.sort());
  });
});

describe('browser bundle', () => {
  it('bundles for the browser platform with no Node built-in and no server code', async () => {
    const code = await bundleClient(new URL('../..', import.meta.url).pathname);
    expect(code).toMatch(/\bChatClient\b/);
    expect(code).toMatch(/export \{[^}]*\bChatClient\b/);
    expect(code).not.toMatch(/from ["']node:|require\(/);
    expect(code).not.toMatch(/zod|winston|pg-pool/);
    expect(code.length).toBeLessThan(60_000);
  });
});
