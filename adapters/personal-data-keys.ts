// Development keys for personal data: an embedded node with no DATA_KEYS makes its own once
// and keeps them beside its data (DATA_DIR/personal-data.keys, readable by its user only),
// so what it sealed stays readable after a restart. A cluster configures its keys instead
// (config: required there), as every node must open what any other sealed.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadPersonalDataKeys, type Config, type PersonalDataKeys } from '../config/index.ts';
import { Keyring, newKeyLine } from '../runtime/personal-data.ts';

export const DEVELOPMENT_KEYS_FILE = 'personal-data.keys';

/** The keyring of a node: its configured keys, or in development mode the ones under DATA_DIR. */
export function keyringFor(config: Pick<Config, 'personalData' | 'storage'>): { keyring: Keyring; file?: string } {
  if (config.personalData) return { keyring: new Keyring(config.personalData) };
  const file = join(config.storage.dataDir, DEVELOPMENT_KEYS_FILE);
  return { keyring: new Keyring(developmentKeys(file)), file };
}

function developmentKeys(file: string): PersonalDataKeys {
  if (!existsSync(file)) {
    mkdirSync(join(file, '..'), { recursive: true });
    const text = `DATA_KEYS=${newKeyLine('dev1')}\nDATA_INDEX_KEY=${randomBytes(48).toString('base64url')}\n`;
    // 'wx': two processes starting at once do not overwrite each other's keys.
    try {
      writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  const env = Object.fromEntries(readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const keys = loadPersonalDataKeys(env);
  if (!keys) throw new Error(`${file} holds no DATA_KEYS and DATA_INDEX_KEY`);
  return keys;
}
