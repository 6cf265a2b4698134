// The two ends of an in-process connection to the embedded database's relay
// (embedded.ts): the client end behaves enough like a net.Socket for pg (pg's `stream`
// option), the server end like an accepted one for the relay. The node's own driver
// talks to the relay without a loopback socket in between: each statement crosses the
// main thread's event loop once instead of three times (driver → relay over TCP, relay
// → database thread, and back), and the driver's writes cost no system call.

import { duplexPair, type Duplex } from 'node:stream';

export interface InProcessConnection {
  /** For pg: connect() just says 'connect'; the socket options are meaningless here. */
  readonly client: Duplex;
  /** For the relay, as an accepted socket. */
  readonly server: Duplex;
}

export function inProcessConnection(): InProcessConnection {
  // Not half-open: one end ending its side ends the other's, as a TCP peer's FIN does to a net.Socket.
  const [client, server] = duplexPair({ allowHalfOpen: false });
  // A destroyed end closes the other, as a reset does (pg hears of a dropped connection by 'close').
  client.once('close', () => server.destroy());
  server.once('close', () => client.destroy());
  const socketLike = (end: Duplex) => Object.assign(end, {
    setNoDelay: () => end,
    setKeepAlive: () => end,
    ref: () => end,
    unref: () => end,
  });
  Object.assign(socketLike(client), {
    connect: () => { process.nextTick(() => client.emit('connect')); return client; },
  });
  socketLike(server);
  return { client, server };
}
