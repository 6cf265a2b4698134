// In-process notifications for the embedded node: the edge subscribes, actors publish.

import { EventEmitter } from 'node:events';
import type { Notifier } from '../../runtime/ports.ts';

type Listener = (userId: string, message: unknown, trace?: string) => void;

export class InProcessNotifier implements Notifier {
  readonly #events = new EventEmitter().setMaxListeners(0);

  async publish(userId: string, message: unknown, trace?: string): Promise<void> {
    this.#events.emit('notification', userId, message, trace);
  }

  subscribe(listener: Listener): () => void {
    this.#events.on('notification', listener);
    return () => this.#events.off('notification', listener);
  }
}
