/**
 * Structured JSON logs (winston), one line per event. Never log tokens, secrets or
 * message bodies: callers pass ids, codes and sizes only.
 */
import winston from 'winston';

/** The service's logger type. */
export type Logger = winston.Logger;

/** A JSON-lines logger at `level`, to stdout (stderr for errors and warnings). `silent` for tests. */
export function createLogger(level: string, opts: { silent?: boolean; service?: string } = {}): Logger {
  return winston.createLogger({
    level,
    silent: opts.silent,
    defaultMeta: { service: opts.service ?? 'chat-server', pid: process.pid },
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn'] })],
  });
}
