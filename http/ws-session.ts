// A WebSocket session is its socket: the gateway's WebSocketServer makes its sockets of this
// class (ws's `WebSocket` option), so what the gateway knows of a session (its user, its
// socket place, its subscriptions) is held in fields of the socket. A session object of its own, a
// WeakMap entry to find it from the socket's listeners, and per-session Sets were about 250
// bytes of heap per connected driver, with every driver holding one socket.

import type { ClientRequestArgs } from 'node:http';
import { WebSocket } from 'ws';
import type { Scheduled } from '../runtime/deadlines.ts';
import type { TokenBucket } from '../runtime/token-bucket.ts';
import type { Principal } from './auth.ts';

/**
 * The events the gateway listens to, there from the start. An EventEmitter's listener table
 * starts as a null-prototype object, which V8 keeps as a dictionary (256 bytes once the
 * gateway's four listeners are in); one with its keys set in the constructor stays a small
 * object of fixed shape, as Node's own streams make theirs.
 */
const events = () => ({ close: undefined, error: undefined, message: undefined, ping: undefined, pong: undefined });

/**
 * ws's extensions of a session: none (the server negotiates no permessage-deflate), and ws
 * only reads them; a server that negotiated one would give its socket an object of its own.
 * One for all instead of an empty object per socket.
 */
const NO_EXTENSIONS = Object.freeze({});

export class Session extends WebSocket implements Scheduled {
  /** The client's address (its sockets are capped per address). */
  ip = '';
  principal: Principal | undefined = undefined;
  /** Answered the last heartbeat's ping. */
  alive = true;
  /** The bookings a rider follows; made by the first `subscribe`. */
  subscriptions: Set<string> | undefined = undefined;
  /** Before auth the socket has a bucket of its own; after, its user's (in the limiter), and this one goes. */
  bucket: TokenBucket | undefined = undefined;
  /**
   * Its hold on one of the user's socket places (released when it closes); the place's key
   * is made from the user's id when needed rather than kept.
   */
  placeHolder: string | undefined = undefined;
  /** An `auth` message being checked: messages that arrive meanwhile wait for it. */
  authenticating: Promise<void> | undefined = undefined;
  ops: NodeJS.Timeout | undefined = undefined;
  /** Where its deadline (auth, then token expiry) is in the gateway's Deadlines; -1 when it has none. */
  deadlineSlot = -1;

  // ws makes a server's sockets with a null address (no URL to connect to) and its options.
  constructor(
    address: string | URL | null, protocols?: string | string[] | WebSocket.ClientOptions | ClientRequestArgs,
    options?: WebSocket.ClientOptions | ClientRequestArgs,
  ) {
    super(address as string, protocols as string[] | undefined, options);
    const internals = this as unknown as { _events: object; _extensions: object };
    internals._events = events();
    internals._extensions = NO_EXTENSIONS;
  }
}
