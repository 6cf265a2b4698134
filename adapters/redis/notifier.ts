// Notifications across nodes, routed by user: a node subscribes to the channel of each user
// it holds sockets for (watch, unwatch), and a notification goes to its user's channel. Redis
// then delivers it to the nodes holding that user's sockets and to no other, and to none at
// all for a user with no socket open (a rider on HTTP only). Redis's own subscription table is
// the session directory: nothing to keep in step, and a node that dies takes its
// subscriptions with its connection. (One channel that every node read made each node
// receive and parse every notification of the cluster: three nodes, three times the work.)

import { Redis } from 'ioredis';
import type { Notifier } from '../../runtime/ports.ts';
import { UserChannels } from './user-channels.ts';

type Listener = (userId: string, message: unknown, trace?: string) => void;

export class RedisNotifier implements Notifier {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #listeners = new Set<Listener>();
  readonly #channels: UserChannels;

  constructor(options: { url: string; prefix?: string; onError?: (error: unknown, context: string) => void }) {
    this.#prefix = `${options.prefix ?? 'dispatch'}:notify:`;
    // Publishes of one tick (a batch's outcomes, say) leave in one write (auto-pipelining).
    this.#pub = new Redis(options.url, { maxRetriesPerRequest: 2, enableAutoPipelining: true });
    this.#sub = new Redis(options.url, { maxRetriesPerRequest: 2 });
    for (const client of [this.#pub, this.#sub]) client.on('error', (e) => options.onError?.(e, 'redis notifier'));
    this.#channels = new UserChannels({
      subscribe: async (users) => { await this.#sub.subscribe(...users.map((u) => this.#prefix + u)); },
      unsubscribe: async (users) => { await this.#sub.unsubscribe(...users.map((u) => this.#prefix + u)); },
      onError: (e) => options.onError?.(e, 'subscribe notifications'),
    });
    this.#sub.on('message', (channel: string, raw: string) => this.#receive(channel, raw));
  }

  #receive(channel: string, raw: string): void {
    if (!channel.startsWith(this.#prefix)) return;
    const userId = channel.slice(this.#prefix.length);
    // Sent before this node's unsubscribe took effect: nobody here wants it, so it is not parsed.
    if (!this.#channels.watched(userId)) return;
    let parsed: { message: unknown; trace?: string };
    try { parsed = JSON.parse(raw); } catch { return; }
    for (const listener of this.#listeners) listener(userId, parsed.message, parsed.trace);
  }

  /** The trace rides along only when there is one (tracing on, a traced request). */
  async publish(userId: string, message: unknown, trace?: string): Promise<void> {
    await this.#pub.publish(this.#prefix + userId, JSON.stringify(trace === undefined ? { message } : { message, trace }));
  }

  watch(userId: string): Promise<void> {
    return this.#channels.watch(userId);
  }

  unwatch(userId: string): void {
    this.#channels.unwatch(userId);
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#channels.close();
    this.#sub.disconnect();
    this.#pub.disconnect();
  }
}
