// Accounts for deployments without their own identity provider.

import type { Orm } from './orm.ts';
import type { Guard } from '../resilience.ts';

export interface AccountRecord {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly phone?: string;
  readonly role: string;
  readonly passwordHash: string;
}

export class DuplicateEmailError extends Error {
  override readonly name = 'DuplicateEmailError';
}

export class AccountStore {
  readonly #orm: Orm;
  readonly #guard: Guard;
  constructor(orm: Orm, g: Guard) {
    this.#orm = orm;
    this.#guard = g;
  }

  async create(a: AccountRecord): Promise<void> {
    try {
      await this.#guard.run(() => this.#orm.em.getConnection().execute(
        'insert into account (id, email, name, phone, role, password_hash) values (?, ?, ?, ?, ?, ?)',
        [a.id, a.email.toLowerCase(), a.name, a.phone ?? null, a.role, a.passwordHash]));
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new DuplicateEmailError(`an account for ${a.email} exists`);
      throw error;
    }
  }

  /** Replaces a password hash (an old-cost hash upgraded at login). */
  async setPasswordHash(id: string, passwordHash: string): Promise<void> {
    await this.#guard.run(() => this.#orm.em.getConnection().execute('update account set password_hash = ? where id = ?', [passwordHash, id]));
  }

  async byEmail(email: string): Promise<AccountRecord | undefined> {
    const [row] = await this.#guard.run(() => this.#orm.em.getConnection().execute(
      'select id, email, name, phone, role, password_hash from account where email = ?', [email.toLowerCase()],
    )) as { id: string; email: string; name: string; phone: string | null; role: string; password_hash: string }[];
    return row && { id: row.id, email: row.email, name: row.name, phone: row.phone ?? undefined, role: row.role, passwordHash: row.password_hash };
  }
}
