/**
 * A TCP proxy on 127.0.0.1 for fault tests: it can freeze (sockets stay open, nothing is
 * forwarded, in both directions or only target → client), cut every open connection,
 * refuse new ones (accepted then reset, or not listening at all: {@link down}), and
 * forward to another target port.
 */
import net from 'node:net';
import { createTestDatabase, type TestDatabase } from './db.ts';

/** Which directions a freeze stops: both, or only target → client ("down"). */
export type FreezeMode = 'both' | 'down';

/** A freezable TCP proxy (see the module doc). */
export class FreezableProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<[client: net.Socket, upstream: net.Socket]>();
  private frozen: FreezeMode | undefined;
  private refusing = false;
  /** The proxy's own port, after {@link start}. */
  port = 0;

  /** @param target where connections are forwarded (see {@link retarget}) */
  constructor(private target: { host: string; port: number }) {}

  /** Listen on 127.0.0.1: port 0 the first time, the same port again after {@link down}. */
  async start(): Promise<void> {
    const server = net.createServer((client) => {
      if (this.refusing) return void client.destroy();
      const upstream = net.connect(this.target.port, this.target.host);
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      for (const [a, b] of [pair, [upstream, client]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => {
          this.pairs.delete(pair);
          b.destroy();
        });
      }
      this.connect(pair);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** The outage: stop listening (new connections are refused by the OS) and cut every open one. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    this.cut();
    await closed;
  }

  /** Stop forwarding on open and new connections (`down`: only target → client). */
  freeze(mode: FreezeMode = 'both'): void {
    this.frozen = mode;
    for (const [c, u] of this.pairs) {
      u.unpipe(c);
      u.pause();
      if (mode === 'both') {
        c.unpipe(u);
        c.pause();
      }
    }
  }

  /** Forward again; what was held is delivered. */
  thaw(): void {
    this.frozen = undefined;
    for (const pair of this.pairs) this.connect(pair);
  }

  /** Destroy every open connection (the peers see a reset). */
  cut(): void {
    for (const [c, u] of this.pairs) {
      c.destroy();
      u.destroy();
    }
  }

  /** While true, new connections are closed as soon as they are accepted. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Forward new connections to `port` on the same host. */
  retarget(port: number): void {
    this.target = { ...this.target, port };
  }

  /** Cut every connection and stop listening. */
  async close(): Promise<void> {
    await this.down();
  }

  /** Pipe the directions the freeze mode lets through (unpiping first: never twice). */
  private connect([c, u]: [net.Socket, net.Socket]): void {
    c.unpipe(u);
    u.unpipe(c);
    if (this.frozen !== 'both') {
      c.pipe(u);
      c.resume();
    } else c.pause();
    if (this.frozen === undefined) {
      u.pipe(c);
      u.resume();
    } else u.pause();
  }
}

/** A private test database reached through a {@link FreezableProxy}. */
export interface ProxiedDatabase {
  /** The database (drop it, or let a TestServer's close() do it). */
  database: TestDatabase;
  /** The proxy in front of it (started). */
  proxy: FreezableProxy;
  /** The database's URL through the proxy, for a server's DATABASE_URL. */
  url: string;
}

/** Create a private PostgreSQL test database and a started proxy in front of it (PostgreSQL only). */
export async function databaseBehindProxy(): Promise<ProxiedDatabase> {
  const database = await createTestDatabase();
  const u = new URL(database.url!);
  const proxy = new FreezableProxy({ host: u.hostname, port: Number(u.port || 5432) });
  await proxy.start();
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  return { database, proxy, url: u.toString() };
}
