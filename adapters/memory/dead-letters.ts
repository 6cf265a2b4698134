// Dead letters in memory, for the runtime's tests and benchmarks.

import type { DeadLetter, DeadLetterStore } from '../../runtime/ports.ts';

export class MemoryDeadLetterStore implements DeadLetterStore {
  readonly #letters = new Map<string, DeadLetter>();
  /** Set to make every call fail, as a storage outage would. */
  failing: Error | undefined;

  async add(letter: DeadLetter): Promise<void> {
    if (this.failing) throw this.failing;
    const known = this.#letters.get(letter.id);
    this.#letters.set(letter.id, known ? { ...letter, attempts: known.attempts + letter.attempts } : structuredClone(letter));
  }

  async list(limit: number): Promise<DeadLetter[]> {
    return [...this.#letters.values()].sort((a, b) => b.at - a.at).slice(0, limit);
  }

  async get(id: string): Promise<DeadLetter | undefined> {
    return this.#letters.get(id);
  }

  async remove(id: string): Promise<boolean> {
    return this.#letters.delete(id);
  }
}
