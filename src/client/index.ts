/**
 * Typed client SDK of the chat protocol (PROTOCOL.md), for browsers and Node: see
 * {@link ChatClient} and README "Client SDK". Imports nothing from Node or the server at
 * run time.
 */
export { ChatClient } from './client.ts';
export type { ChatClientOptions, ClientState, StateChange, SyncPage, TokenSource, WebSocketConstructor, WebSocketLike } from './options.ts';
export { backoffDelay, onClose, type BackoffOptions, type CloseAction, type StopReason } from './reconnect.ts';
export { ClientError, type ClientErrorCode } from './requests.ts';
export * from './types.ts';
