// npm run keys -- new <id>: prints a fresh DATA_KEYS entry (<id>:<32 random bytes, base64url>).
// npm run keys -- rotate: re-seals every personal value not under DATA_KEY_ID (and seals any
// plaintext left from before sealing), with the keys and database the nodes use (DATA_KEYS,
// DATA_KEY_ID, DATA_INDEX_KEY, DATABASE_URL; NAME_FILE works for each). Safe while nodes run.
// Needs DATABASE_URL: an embedded node owns its database alone. A value that does not open is
// reported (table, row, where in it) and left as it is; the run still completes (exit 0).

import { ConfigError, loadPersonalDataKeys } from '../config/index.ts';
import { openOrm } from '../adapters/postgres/orm.ts';
import { rotateKeys, surveySealed, UNREADABLE_LISTED } from '../adapters/postgres/rotate-keys.ts';
import { Keyring, newKeyLine } from '../runtime/personal-data.ts';

const USAGE = 'usage: npm run keys -- new <id> | rotate';

export async function main(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  out: (line: string) => void = (line) => { process.stdout.write(`${line}\n`); },
): Promise<number> {
  const [command, id] = args;
  if (command === 'new') {
    out(newKeyLine(id ?? `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`));
    return 0;
  }
  if (command !== 'rotate') {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let keys;
  try {
    keys = loadPersonalDataKeys(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`configuration:\n${error.message}\n`);
    return 2;
  }
  const url = env.DATABASE_URL;
  if (!keys || !url) {
    process.stderr.write('rotate needs DATA_KEYS, DATA_INDEX_KEY and DATABASE_URL as the nodes have them\n');
    return 2;
  }
  const keyring = new Keyring(keys);
  const orm = await openOrm({ url, poolMax: 2 });
  try {
    const { counts, unreadable } = await rotateKeys(orm, keyring);
    const left = await surveySealed(orm, keyring);
    out(JSON.stringify({ activeKey: keyring.activeId, ...counts, sealedByKey: left.byKey, unreadable }));
    const old = Object.keys(left.byKey).filter((k) => k !== keyring.activeId);
    if (old.length > 0) {
      out(`values under ${old.join(', ')} remain (written by a node meanwhile?): run rotate again before removing those keys`);
    }
    const bad = Object.values(counts).reduce((n, c) => n + c.unreadable, 0);
    if (bad > 0) {
      const listed = unreadable.map((u) => `${u.table} ${u.row} ${u.at}`).join('; ');
      out(`${bad} personal value(s) did not open and were left as they are (altered, copied from another record, or sealed under a key ` +
        `no longer in DATA_KEYS); they keep no key in use. ${bad > UNREADABLE_LISTED ? `The first ${UNREADABLE_LISTED}` : 'They'}: ${listed}. ` +
        'Admins see such a driver field as null, named in `unreadable`; setting it again (PATCH /v1/admin/drivers/{id}) replaces it ' +
        'there, while the journal entries that wrote it keep it and are listed again on the next run.');
    }
    return 0;
  } finally {
    await orm.close(true);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));
