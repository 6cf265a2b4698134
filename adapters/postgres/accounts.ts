// Accounts for deployments without their own identity provider. Email, name and phone are
// sealed at rest (runtime/personal-data.ts); an account is found by its email's keyed hash.

import type { Orm } from './orm.ts';
import type { Guard } from '../resilience.ts';
import { normalizeEmail, type Keyring } from '../../runtime/personal-data.ts';
import { DuplicateEmailError, type AccountRecord, type Accounts } from '../../http/ports.ts';

export { DuplicateEmailError, type AccountRecord };

interface AccountRow { id: string; email: string; name: string; phone: string | null; role: string; password_hash: string }

export class AccountStore implements Accounts {
  readonly #orm: Orm;
  readonly #guard: Guard;
  readonly #keys: Keyring;
  constructor(orm: Orm, g: Guard, keys: Keyring) {
    this.#orm = orm;
    this.#guard = g;
    this.#keys = keys;
  }

  async create(a: AccountRecord): Promise<void> {
    const k = this.#keys;
    // Each value is sealed for its account and column: copied to another row or column, it does not open.
    const seal = (field: string, value: string) => k.seal(value, { scope: 'account', id: a.id, field });
    try {
      await this.#guard.run(() => this.#orm.em.getConnection().execute(
        'insert into account (id, email, email_hash, name, phone, role, password_hash) values (?, ?, ?, ?, ?, ?, ?)',
        [
          a.id, seal('email', normalizeEmail(a.email)), k.emailIndex(a.email), seal('name', a.name),
          a.phone === undefined ? null : seal('phone', a.phone), a.role, a.passwordHash,
        ]));
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw new DuplicateEmailError('an account for this email exists');
      throw error;
    }
  }

  /** Replaces a password hash (an old-cost hash upgraded at login). */
  async setPasswordHash(id: string, passwordHash: string): Promise<void> {
    await this.#guard.run(() => this.#orm.em.getConnection().execute('update account set password_hash = ? where id = ?', [passwordHash, id]));
  }

  async byEmail(email: string): Promise<AccountRecord | undefined> {
    // A row from before sealing has no hash yet and its email in plaintext (until `npm run keys -- rotate`).
    const [row] = await this.#guard.run(() => this.#orm.em.getConnection().execute(
      'select id, email, name, phone, role, password_hash from account where email_hash = ? or (email_hash is null and email = ?) limit 1',
      [this.#keys.emailIndex(email), normalizeEmail(email)],
    )) as AccountRow[];
    const open = (field: string, value: string | null) => this.#keys.reveal(value, { scope: 'account', id: row!.id, field });
    return row && {
      id: row.id,
      email: open('email', row.email)!,
      name: open('name', row.name)!,
      phone: open('phone', row.phone),
      role: row.role,
      passwordHash: row.password_hash,
    };
  }
}
