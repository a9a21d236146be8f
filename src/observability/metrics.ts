/**
 * Prometheus metrics (prom-client): connections, users, frames in/out by type, commands
 * by type and outcome with latency, errors by code, messages stored, process metrics.
 * Label children are cached so the hot path does no label hashing.
 */
import client from 'prom-client';
import type { GatewayMetrics } from '../gateway/host.ts';

/** The service's metrics on their own registry. */
export class Metrics implements GatewayMetrics {
  readonly registry = new client.Registry();
  private readonly framesIn: client.Counter;
  private readonly framesOut: client.Counter<'type'>;
  private readonly commands: client.Histogram<'type'>;
  private readonly errors: client.Counter<'code'>;
  private readonly outChildren = new Map<string, client.Counter.Internal>();
  private readonly cmdChildren = new Map<string, client.Histogram.Internal<'type'>>();
  private readonly errChildren = new Map<string, client.Counter.Internal>();

  /** @param gauges callbacks read at scrape time: open connections, authenticated users */
  constructor(gauges: { connections(): number; users(): number }, defaultLabels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(defaultLabels);
    client.collectDefaultMetrics({ register: this.registry });
    new client.Gauge({ name: 'chat_open_connections', help: 'Open WebSocket connections', registers: [this.registry], collect() { this.set(gauges.connections()); } });
    new client.Gauge({ name: 'chat_authenticated_users', help: 'Distinct authenticated users', registers: [this.registry], collect() { this.set(gauges.users()); } });
    this.framesIn = new client.Counter({ name: 'chat_frames_in_total', help: 'Inbound text frames', registers: [this.registry] });
    this.framesOut = new client.Counter({ name: 'chat_frames_out_total', help: 'Outbound frames by type', labelNames: ['type'], registers: [this.registry] });
    this.commands = new client.Histogram({
      name: 'chat_command_duration_seconds',
      help: 'Command handling time by type (ack latency as the server sees it)',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.errors = new client.Counter({ name: 'chat_errors_total', help: 'Error frames by code', labelNames: ['code'], registers: [this.registry] });
  }

  frameIn(): void {
    this.framesIn.inc();
  }

  frameOut(frame: string): void {
    // Frames start with {"type":"…" (builders put type first).
    const end = frame.indexOf('"', 9);
    const type = frame.startsWith('{"type":"') && end > 9 && end < 64 ? frame.slice(9, end) : 'other';
    let c = this.outChildren.get(type);
    if (!c) this.outChildren.set(type, (c = this.framesOut.labels(type)));
    c.inc();
  }

  commandDone(type: string, ms: number, errorCode: string | null): void {
    let h = this.cmdChildren.get(type);
    if (!h) this.cmdChildren.set(type, (h = this.commands.labels(type)));
    h.observe(ms / 1000);
    if (errorCode) {
      let e = this.errChildren.get(errorCode);
      if (!e) this.errChildren.set(errorCode, (e = this.errors.labels(errorCode)));
      e.inc();
    }
  }

  /** Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
