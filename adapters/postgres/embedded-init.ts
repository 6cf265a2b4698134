// Creates a new embedded database directory (PGlite's initdb), in a process of its own:
// `node embedded-init.ts <dir>`. Started by embedded.ts for a directory that is missing
// or empty. initdb takes about twice the memory serving does, and a thread gives little of
// it back when it ends (the allocator keeps it), while a process gives back all of it: a
// node that created its database served with 190 MB more than one that found it there.

import { PGlite } from '@electric-sql/pglite';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node embedded-init.ts <dir>\n');
  process.exit(2);
}
const db = await PGlite.create({ dataDir: dir });
await db.query('select 1');
await db.close();
