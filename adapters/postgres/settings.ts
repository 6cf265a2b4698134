// Cluster-wide settings (the pricing policy) in one table, cached briefly per node
// so a quote does not cost a query; a change reaches every node within the TTL.

import type { Orm } from './orm.ts';
import type { Guard } from '../resilience.ts';
import type { Settings } from '../../http/ports.ts';

export class SettingsStore implements Settings {
  readonly #orm: Orm;
  readonly #guard: Guard;
  readonly #cache = new Map<string, { value: unknown; until: number }>();
  readonly #ttlMs: number;

  constructor(orm: Orm, g: Guard, ttlMs = 5_000) {
    this.#orm = orm;
    this.#ttlMs = ttlMs;
    this.#guard = g;
  }

  async get<T>(key: string, fallback: T): Promise<T> {
    const cached = this.#cache.get(key);
    if (cached && cached.until > Date.now()) return cached.value as T;
    const [row] = await this.#guard.run(
      () => this.#orm.em.getConnection().execute('select value from setting where key = ?', [key]),
    ) as { value: unknown }[];
    const value = row ? (typeof row.value === 'string' ? JSON.parse(row.value) : row.value) as T : fallback;
    this.#cache.set(key, { value, until: Date.now() + this.#ttlMs });
    return value;
  }

  async put(key: string, value: unknown): Promise<void> {
    await this.#guard.run(() => this.#orm.em.getConnection().execute(
      `insert into setting (key, value, updated_at) values (?, ?, now())
       on conflict (key) do update set value = excluded.value, updated_at = now()`, [key, JSON.stringify(value)]));
    this.#cache.set(key, { value, until: Date.now() + this.#ttlMs });
  }
}
