// Cross-node asks and command outcomes over Redis pub/sub: one channel per node,
// correlation ids, timeouts. Pub/sub loses what is sent while a node is
// disconnected, which is right for these: an ask or a reply that cannot be
// delivered in time is answered by the asker's timeout, never by a wrong value.
// ioredis reconnects and re-subscribes by itself after a Redis restart.
//
// The wires of one tick to one node go in one message, a JSON array of them (a lone wire
// goes as itself, as before): a batch's outcomes, a search's asks of its cells on that node,
// their answers. Each was a PUBLISH of its own, read, parsed and dispatched on its own by the
// receiver: about one per dispatch command with three nodes, none with one. A receiver takes
// both forms.

import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { EntityRef } from '../../actors/behavior.ts';
import { AskTimeoutError } from '../../runtime/region.ts';
import type { CommandResult, RemoteChannel } from '../../runtime/ports.ts';
import { DependencyUnreachableError } from '../../runtime/errors.ts';
import type { NodeId } from '../../runtime/entity.ts';

type Wire =
  | {
    readonly type: 'ask'; readonly corr: string; readonly from: string; readonly to: EntityRef; readonly query: unknown;
    readonly trace?: string;
  }
  | { readonly type: 'answer'; readonly corr: string; readonly ok: true; readonly value: unknown }
  | { readonly type: 'answer'; readonly corr: string; readonly ok: false; readonly error: string; readonly errorName: string }
  | { readonly type: 'outcome'; readonly commandId: string; readonly result: CommandResult };

interface PendingAsk {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class RemoteAskError extends Error {
  override readonly name = 'RemoteAskError';
  readonly remoteName: string;
  constructor(message: string, remoteName: string) {
    super(message);
    this.remoteName = remoteName;
  }
}

export interface RedisRemoteChannelOptions {
  readonly url: string;
  readonly nodeId: NodeId;
  readonly prefix?: string;
  readonly onError?: (error: unknown, context: string) => void;
  /**
   * Each wire a message of its own, as nodes before the batched form read them (WIRE_FORMS=previous,
   * while a cluster rolls onto this release): such a node drops an array, and its asks time out.
   */
  readonly oneWirePerMessage?: boolean;
}

export class RedisRemoteChannel implements RemoteChannel {
  readonly #o: RedisRemoteChannelOptions;
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #pending = new Map<string, PendingAsk>();
  #handlers: Parameters<RemoteChannel['serve']>[0] | undefined;
  /** Wires of this tick per node, each already encoded, and whether a flush is due. */
  readonly #outbox = new Map<NodeId, string[]>();
  #flushing = false;
  /** The last connection error per client, to say why Redis cannot be reached. */
  readonly #lastError = new Map<Redis, Error>();

  constructor(options: RedisRemoteChannelOptions) {
    this.#o = options;
    const redisOptions = { maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: true };
    // Asks, answers and outcomes of one tick leave in one write (auto-pipelining; not for the subscriber).
    this.#pub = new Redis(options.url, { ...redisOptions, enableAutoPipelining: true });
    this.#sub = new Redis(options.url, redisOptions);
    for (const client of [this.#pub, this.#sub]) {
      client.on('error', (e) => {
        // While start-up waits for Redis, the waiting line says it once; ioredis would say it every retry.
        if (this.#handlers) options.onError?.(e, 'redis');
        this.#lastError.set(client, e);
      });
    }
    this.#sub.on('message', (_channel, raw) => this.#receive(raw));
  }

  #channel(node: NodeId): string {
    return `${this.#o.prefix ?? 'dispatch'}:node:${node}`;
  }

  /** May be called again after it failed (Redis not reachable yet): ioredis keeps reconnecting meanwhile. */
  async serve(handlers: Parameters<RemoteChannel['serve']>[0]): Promise<void> {
    await Promise.all([this.#reachable(this.#pub), this.#reachable(this.#sub)]);
    await this.#sub.subscribe(this.#channel(this.#o.nodeId));
    this.#handlers = handlers;
  }

  async #reachable(client: Redis): Promise<void> {
    if (client.status === 'wait') client.connect().catch(() => undefined);
    try {
      await client.ping();
    } catch (error) {
      const u = new URL(this.#o.url);
      throw new DependencyUnreachableError('Redis', `${u.hostname}:${u.port || 6379}`, this.#lastError.get(client) ?? error);
    }
  }

  #receive(raw: string): void {
    const handlers = this.#handlers;
    if (!handlers) return;
    let parsed: Wire | Wire[];
    try { parsed = JSON.parse(raw) as Wire | Wire[]; } catch { return; }
    if (!Array.isArray(parsed)) { this.#handle(handlers, parsed); return; }
    for (const wire of parsed) this.#handle(handlers, wire);
  }

  #handle(handlers: Parameters<RemoteChannel['serve']>[0], wire: Wire): void {
    switch (wire?.type) {
      case 'ask':
        handlers.ask(wire.to, wire.query, wire.trace).then(
          (value) => this.#send(wire.from, { type: 'answer', corr: wire.corr, ok: true, value }),
          (error: Error) => this.#send(wire.from, { type: 'answer', corr: wire.corr, ok: false, error: error.message, errorName: error.name }),
        );
        break;
      case 'answer': {
        const pending = this.#pending.get(wire.corr);
        if (!pending) return;
        clearTimeout(pending.timer);
        this.#pending.delete(wire.corr);
        if (wire.ok) pending.resolve(wire.value);
        else pending.reject(new RemoteAskError(wire.error, wire.errorName));
        break;
      }
      case 'outcome':
        handlers.reply(wire.commandId, wire.result);
        break;
    }
  }

  ask(node: NodeId, to: EntityRef, query: unknown, timeoutMs: number, trace?: string): Promise<unknown> {
    const corr = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(corr);
        reject(new AskTimeoutError(`ask to ${to.kind}:${to.id} on node ${node} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(corr, { resolve, reject, timer });
      this.#send(node, { type: 'ask', corr, from: this.#o.nodeId, to, query, ...(trace === undefined ? {} : { trace }) });
    });
  }

  /** Leaves with this tick's other wires to `node`; a failed publish is reported by the channel (onError). */
  async reply(node: NodeId, commandId: string, result: CommandResult): Promise<void> {
    this.#send(node, { type: 'outcome', commandId, result });
  }

  async close(): Promise<void> {
    for (const [corr, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new Error('remote channel closed'));
      this.#pending.delete(corr);
    }
    this.#outbox.clear();
    this.#sub.disconnect();
    this.#pub.disconnect();
  }

  #send(node: NodeId, wire: Wire): void {
    const encoded = JSON.stringify(wire);
    const wires = this.#outbox.get(node);
    if (wires) wires.push(encoded); else this.#outbox.set(node, [encoded]);
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => this.#flush());
  }

  #publish(node: NodeId, message: string): void {
    this.#pub.publish(this.#channel(node), message).catch((e) => this.#o.onError?.(e, `publish to ${node}`));
  }

  /** One PUBLISH per node for the tick's wires (auto-pipelining puts them in one write). */
  #flush(): void {
    this.#flushing = false;
    for (const [node, wires] of this.#outbox) {
      if (this.#o.oneWirePerMessage) for (const wire of wires) this.#publish(node, wire);
      else this.#publish(node, wires.length === 1 ? wires[0]! : `[${wires.join(',')}]`);
    }
    this.#outbox.clear();
  }
}
