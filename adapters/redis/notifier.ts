// Notifications across nodes: every node subscribes to one channel and pushes a
// notification to the sockets it holds for that user. Fan-out to all nodes is
// the simple choice for a fleet of tens of nodes; per-user routing would need a
// session directory and buys little until then.

import { Redis } from 'ioredis';
import type { Notifier } from '../../runtime/ports.ts';

type Listener = (userId: string, message: unknown, trace?: string) => void;

export class RedisNotifier implements Notifier {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #channel: string;
  readonly #listeners = new Set<Listener>();

  constructor(options: { url: string; prefix?: string; onError?: (error: unknown, context: string) => void }) {
    this.#channel = `${options.prefix ?? 'dispatch'}:notify`;
    this.#pub = new Redis(options.url, { maxRetriesPerRequest: 2 });
    this.#sub = new Redis(options.url);
    for (const client of [this.#pub, this.#sub]) client.on('error', (e) => options.onError?.(e, 'redis notifier'));
    this.#sub.on('message', (_channel, raw) => {
      let parsed: { userId: string; message: unknown; trace?: string };
      try { parsed = JSON.parse(raw); } catch { return; }
      for (const listener of this.#listeners) listener(parsed.userId, parsed.message, parsed.trace);
    });
    void this.#sub.subscribe(this.#channel).catch((e) => options.onError?.(e, 'subscribe notifications'));
  }

  /** The trace rides along only when there is one (tracing on, a traced request). */
  async publish(userId: string, message: unknown, trace?: string): Promise<void> {
    await this.#pub.publish(this.#channel, JSON.stringify(trace === undefined ? { userId, message } : { userId, message, trace }));
  }

  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#sub.disconnect();
    this.#pub.disconnect();
  }
}
