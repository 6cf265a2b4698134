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
    try {
      await this.#guard.run(() => this.#orm.em.getConnection().execute(
        'insert into account (id, email, email_hash, name, phone, role, password_hash) values (?, ?, ?, ?, ?, ?, ?)',
        [
          a.id, k.seal(normalizeEmail(a.email)), k.emailIndex(a.email), k.seal(a.name), a.phone === undefined ? null : k.seal(a.phone),
          a.role, a.passwordHash,
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
    const k = this.#keys;
    return row && {
      id: row.id,
      email: k.reveal(row.email),
      name: k.reveal(row.name),
      phone: k.reveal(row.phone),
      role: row.role,
      passwordHash: row.password_hash,
    };
  }
}
