// A TCP proxy that injects network faults between a client and a real server, for tests:
// put it between a node and PostgreSQL (or Kafka, see below) and cut, refuse, delay or
// reset the traffic while the node runs.
//
//   const proxy = await faultProxy({ target: { host: '127.0.0.1', port: 5432 } });
//   const url = proxy.rewrite(process.env.DATABASE_URL!);  // same URL, the proxy's port
//   ... start a node with DATABASE_URL = url ...
//   proxy.cut();              // every live connection is closed (FIN): in-flight queries fail
//   await proxy.refuse(true); // the port stops listening: connects fail with ECONNREFUSED
//   proxy.delay(500);         // every chunk, both ways, arrives 500 ms late (order kept)
//   proxy.reset();            // every live connection is reset (RST): ECONNRESET
//   await proxy.heal();       // accepts again, no delay
//   await proxy.close();      // in teardown
//
// Kafka: a client bootstraps from the address it is given, but then connects to the
// addresses the brokers advertise in their metadata (here 127.0.0.1:9092), not to the
// proxy. So a proxy in front of Kafka sees the bootstrap connection only, unless either
//  - every connection of the client goes through it: kafkajs takes a `socketFactory`;
//    `proxy.kafkaSocketFactory()` is one that connects to the proxy whatever broker
//    address kafkajs asks for (right for a single-broker cluster, as the tests run); a
//    node's own Kafka client (adapters/kafka/client.ts) would need that option passed in;
//  - or the broker advertises the proxy: run the broker on another port with
//    advertised.listeners naming the proxy's, and start the proxy there (`port` option).

import { connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultProxyOptions {
  readonly target: { readonly host: string; readonly port: number };
  /** The proxy's port on 127.0.0.1; 0 (default) picks a free one. */
  readonly port?: number;
}

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** "127.0.0.1:port", for host:port lists (KAFKA_BROKERS). */
  readonly address: string;
  /** The URL with its host and port replaced by the proxy's (a DATABASE_URL, say). */
  rewrite(url: string): string;
  /** Closes every live connection, both sides (FIN): what a server or a middlebox dropping them looks like. */
  cut(): void;
  /** Resets every live connection, both sides (TCP RST): the client sees ECONNRESET. */
  reset(): void;
  /** true: stops listening, so new connections fail with ECONNREFUSED; false: listens again on the same port. */
  refuse(on: boolean): Promise<void>;
  /** Every chunk from now on, in either direction, is held this long (order kept); 0 for none. */
  delay(ms: number): void;
  /** Listens again if refusing, and no delay. Live connections are left as they are. */
  heal(): Promise<void>;
  /** Live proxied connections. */
  connections(): number;
  /** Connections accepted since the start. */
  accepted(): number;
  /** kafkajs `socketFactory` routing every broker connection through the proxy (single-broker clusters). */
  kafkaSocketFactory(): (args: { onConnect: () => void }) => Socket;
  close(): Promise<void>;
}

interface Pair { readonly client: Socket; readonly server: Socket }

export async function faultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const host = '127.0.0.1';
  const pairs = new Set<Pair>();
  let delayMs = 0;
  let accepted = 0;
  let listener: Server | undefined;
  let port = options.port ?? 0;
  let closed = false;

  const onConnection = (client: Socket) => {
    accepted++;
    const server = connect({ host: options.target.host, port: options.target.port });
    const pair = { client, server };
    pairs.add(pair);
    client.setNoDelay(true);
    server.setNoDelay(true);
    relay(client, server, () => delayMs);
    relay(server, client, () => delayMs);
    const end = (socket: Socket) => () => {
      pairs.delete(pair);
      // Passes a close (or an error) on to the other side the way it came.
      socket.destroy();
    };
    client.on('error', end(server));
    server.on('error', end(client));
    client.on('close', end(server));
    server.on('close', end(client));
  };

  const listen = () => new Promise<void>((resolve, reject) => {
    const server = createServer(onConnection);
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      port = (server.address() as { port: number }).port;
      listener = server;
      resolve();
    });
  });

  /** The port may still be held for a moment by the listener just closed: try again briefly. */
  const listenAgain = async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        await listen();
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== 'EADDRINUSE' || attempt >= 50) throw error;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };

  const stopListening = async () => {
    const current = listener;
    listener = undefined;
    if (!current) return;
    // close() stops accepting at once; its callback would wait for the live connections too.
    await new Promise<void>((resolve) => {
      current.close();
      setImmediate(resolve);
    });
  };

  await listen();

  const proxy: FaultProxy = {
    host,
    get port() { return port; },
    get address() { return `${host}:${port}`; },
    rewrite(url) {
      const u = new URL(url);
      u.hostname = host;
      u.port = String(port);
      return u.toString();
    },
    cut() {
      for (const { client, server } of [...pairs]) {
        client.destroy();
        server.destroy();
      }
      pairs.clear();
    },
    reset() {
      for (const { client, server } of [...pairs]) {
        client.resetAndDestroy();
        server.resetAndDestroy();
      }
      pairs.clear();
    },
    async refuse(on) {
      if (closed) return;
      if (on) await stopListening();
      else if (!listener) await listenAgain();
    },
    delay(ms) {
      delayMs = Math.max(0, ms);
    },
    async heal() {
      delayMs = 0;
      await proxy.refuse(false);
    },
    connections: () => pairs.size,
    accepted: () => accepted,
    kafkaSocketFactory() {
      return ({ onConnect }) => connect({ host, port }, onConnect);
    },
    async close() {
      closed = true;
      await stopListening();
      proxy.cut();
    },
  };
  return proxy;
}

/**
 * Copies from one socket to the other. Without a delay chunks go straight through (with
 * backpressure); with one, each chunk is due `delay` after it arrived and chunks leave in
 * the order they came, even when the delay changes meanwhile.
 */
function relay(from: Socket, to: Socket, delay: () => number): void {
  const queue: { due: number; chunk: Buffer }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const pump = () => {
    timer = undefined;
    const now = Date.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { chunk } = queue.shift()!;
      if (!to.destroyed) to.write(chunk);
    }
    if (queue.length > 0) timer = setTimeout(pump, queue[0]!.due - now);
  };
  from.on('data', (chunk: Buffer) => {
    const ms = delay();
    if (ms === 0 && queue.length === 0) {
      if (!to.destroyed && !to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
      return;
    }
    const last = queue.at(-1)?.due ?? 0;
    queue.push({ due: Math.max(Date.now() + ms, last), chunk });
    if (!timer) timer = setTimeout(pump, Math.max(0, queue[0]!.due - Date.now()));
  });
  from.on('end', () => {
    // Half-close passed on once the held chunks are out.
    const finish = () => (queue.length === 0 ? to.end() : setTimeout(finish, 5));
    finish();
  });
  from.on('close', () => { if (timer) clearTimeout(timer); });
}
