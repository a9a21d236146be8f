/**
 * The address the per-IP limits key on (PROTOCOL §1; src/gateway/admission.ts
 * normalizeIp): IPv4 as is, IPv6 reduced to its /64, so a client cannot escape
 * MAX_CONNECTIONS_PER_IP and CONNECTION_RATE_PER_IP with a new address of its /64 per
 * connection.
 */
import { describe, expect, it } from 'vitest';
import { normalizeIp } from '../../src/gateway/admission.ts';

describe('normalizeIp', () => {
  it('keeps IPv4 and unwraps IPv4-mapped IPv6', () => {
    expect(normalizeIp('203.0.113.7')).toBe('203.0.113.7');
    expect(normalizeIp('::ffff:203.0.113.7')).toBe('203.0.113.7');
  });

  it('gives every address of one /64 the same key, and different /64s different keys', () => {
    const a = normalizeIp('2001:db8:0:7::1');
    expect(a).toBe('2001:db8:0:7::/64');
    for (const same of ['2001:db8:0:7:ffff:ffff:ffff:ffff', '2001:DB8:0000:0007:a:b:c:d', '[2001:db8:0:7::2]', '2001:db8:0:7::9%eth0', '2001:db8:0:7:1:2:1.2.3.4']) expect(normalizeIp(same)).toBe(a);
    expect(normalizeIp('2001:db8:0:8::1')).not.toBe(a);
    expect(normalizeIp('::1')).toBe('0:0:0:0::/64');
    expect(normalizeIp('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });

  it('returns what it cannot parse unchanged (still a key; never throws)', () => {
    for (const bad of ['1::2::3', 'gggg::1', '1:2:3:4:5:6:7:8:9', 'unknown', '2001:db8::1.2.3.999']) expect(normalizeIp(bad)).toBe(bad);
  });
});
