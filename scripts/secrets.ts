// `npm run secrets`: makes the secret files docker-compose.yml mounts (./secrets/*, never
// committed, never in an image): random JWT, quote, personal-data and command-signing keys, and the
// PostgreSQL, Redis and Kafka passwords. An existing file is kept, so running it again does not log
// every user out (and one missing, a secret added since, is made).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { newKeyLine } from '../runtime/personal-data.ts';

/** The secrets compose mounts: 48 random bytes in base64 (the node wants at least 32), or a DATA_KEYS entry. */
export const COMPOSE_SECRETS = [
  'jwt_secret', 'quote_secret', 'postgres_password', 'data_keys', 'data_index_key', 'cluster_key', 'redis_password',
  'kafka_password', 'kafka_broker_password',
] as const;
const MAKE: Partial<Record<(typeof COMPOSE_SECRETS)[number], () => string>> = { data_keys: () => newKeyLine('k1') };

export function makeSecrets(dir: string): { made: string[]; kept: string[] } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made: string[] = [];
  const kept: string[] = [];
  for (const name of COMPOSE_SECRETS) {
    const path = join(dir, name);
    if (existsSync(path)) { kept.push(name); continue; }
    // Base64url: no '/' or '+', so the password needs no escaping inside a URL.
    writeFileSync(path, `${MAKE[name]?.() ?? randomBytes(48).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
    made.push(name);
  }
  return { made, kept };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = resolve(process.argv[2] ?? 'secrets');
  const { made, kept } = makeSecrets(dir);
  process.stdout.write(`secrets in ${dir}: made ${made.join(', ') || 'none'}; kept ${kept.join(', ') || 'none'}\n`);
}
