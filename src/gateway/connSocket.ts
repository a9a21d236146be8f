/**
 * The gateway's WebSocket class and its listeners: every accepted socket points back at
 * its {@link Connection}, so one set of listener functions serves every socket (no
 * closures per connection).
 */
import type { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import type { Connection } from './connection.ts';

/**
 * The accepted socket's class (the `ws` server's `WebSocket` option): it points back at its
 * Connection, so one set of listeners serves every socket.
 */
export class ConnSocket extends WebSocket {
  conn!: Connection;

  /**
   * The underlying TCP socket (`ws` keeps it as `_socket`). Written to directly only with
   * complete frames and only while open and without permessage-deflate, when `ws`'s own
   * sender never holds data back, so frame order is kept.
   */
  rawSocket(): Duplex {
    return (this as unknown as { _socket: Duplex })._socket;
  }
}

/** Listen to `ws`'s message, pong, close and error events for its Connection. */
export function listenTo(ws: ConnSocket): void {
  ws.on('message', onSocketMessage);
  ws.on('pong', onSocketPong);
  ws.on('close', onSocketClose);
  ws.on('error', onSocketError);
}

// `ws` types listeners' `this` as WebSocket; every socket of the gateway is a ConnSocket.
function onSocketMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  (this as ConnSocket).conn.onMessage(data, isBinary);
}
function onSocketPong(this: WebSocket): void {
  (this as ConnSocket).conn.alive = true;
}
function onSocketClose(this: WebSocket): void {
  (this as ConnSocket).conn.cleanup();
}
function onSocketError(this: WebSocket, err: Error): void {
  const conn = (this as ConnSocket).conn;
  conn.host.logger.debug('socket error', { connId: conn.id, err: err.message });
}
