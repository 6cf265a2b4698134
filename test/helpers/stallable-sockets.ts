// A kafkajs socketFactory for tests: plain net.connect sockets that measure every
// Produce request on the wire and can hold the producer's writes (a broker that
// stalls). A TCP proxy would not do: the broker's metadata advertises its own
// address, so after the first request kafkajs goes around any proxy.

import { connect, type Socket } from 'node:net';
import type { ISocketFactory } from 'kafkajs';

const PRODUCE = 0;

interface Tracked {
  readonly socket: Socket;
  readonly write: (chunk: Buffer, ...rest: unknown[]) => boolean;
  /** Bytes of a request not yet complete: kafkajs may write one frame in pieces. */
  partial: Buffer;
  /** Carried a Produce request: a producer's connection, the one a stall holds. */
  producer: boolean;
  held: [Buffer, unknown[]][];
}

export interface StallableSockets {
  readonly socketFactory: ISocketFactory;
  /** Size of every Produce request sent, with its 4-byte length prefix. */
  readonly produceRequestBytes: number[];
  stall(): void;
  resume(): void;
  /** Writes held by the stall and not yet let through. */
  held(): number;
}

export function stallableSockets(): StallableSockets {
  const sockets: Tracked[] = [];
  const produceRequestBytes: number[] = [];
  let stalled = false;

  const scan = (t: Tracked, chunk: Buffer) => {
    t.partial = Buffer.concat([t.partial, chunk]);
    while (t.partial.length >= 6 && t.partial.length >= 4 + t.partial.readInt32BE(0)) {
      const size = 4 + t.partial.readInt32BE(0);
      if (t.partial.readInt16BE(4) === PRODUCE) {
        t.producer = true;
        produceRequestBytes.push(size);
      }
      t.partial = t.partial.subarray(size);
    }
  };

  const socketFactory: ISocketFactory = ({ host, port, onConnect }) => {
    const socket = connect({ host, port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    const t: Tracked = { socket, write: socket.write.bind(socket) as Tracked['write'], partial: Buffer.alloc(0), producer: false, held: [] };
    sockets.push(t);
    socket.write = ((chunk: Buffer, ...rest: unknown[]) => {
      scan(t, Buffer.from(chunk));
      if (stalled && t.producer) {
        t.held.push([chunk, rest]);
        return true;
      }
      return t.write(chunk, ...rest);
    }) as Socket['write'];
    return socket;
  };

  return {
    socketFactory,
    produceRequestBytes,
    stall() { stalled = true; },
    resume() {
      stalled = false;
      // In order, as the broker would have got them had the network not stalled.
      for (const t of sockets) {
        for (const [chunk, rest] of t.held.splice(0)) if (!t.socket.destroyed) t.write(chunk, ...rest);
      }
    },
    held: () => sockets.reduce((n, t) => n + t.held.length, 0),
  };
}
