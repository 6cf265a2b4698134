// Password hashing and strength: scrypt at OWASP's cost with the parameters in the
// stored string (older hashes keep verifying), and zxcvbn's judgement of strength.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes, scryptSync } from 'node:crypto';
import { hashPassword, MIN_SCORE, needsRehash, passwordProblem, SCRYPT, verifyPassword } from '../http/passwords.ts';
import { repoRoot } from './helpers/node-process.ts';

/** A hash in the stored format at any cost (as an older release wrote them). */
function hashAt(password: string, N: number, r = 8, p = 1): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, 32, { N, r, p, maxmem: 256 * N * r });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

test('hashes carry OWASP scrypt parameters (N=2^17, r=8, p=1) and verify', async (t) => {
  t.deepEqual({ N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p }, { N: 2 ** 17, r: 8, p: 1 });
  const stored = await hashPassword('correct-Horse-9');
  const [scheme, n, r, p, salt, key] = stored.split('$');
  t.is(scheme, 'scrypt');
  t.is(Number(n), 131_072);
  t.is(Number(r), 8);
  t.is(Number(p), 1);
  t.is(Buffer.from(salt!, 'base64').length, 16);
  t.is(Buffer.from(key!, 'base64').length, 32);
  t.true(await verifyPassword('correct-Horse-9', stored));
  t.false(await verifyPassword('correct-Horse-8', stored));
  t.not(await hashPassword('correct-Horse-9'), stored, 'salted: the same password hashes differently');
  t.false(needsRehash(stored));
});

test('hashes from the older, cheaper cost still verify and are flagged for rehashing', async (t) => {
  const old = hashAt('an-old-Password-7', 2 ** 15);
  t.true(await verifyPassword('an-old-Password-7', old));
  t.false(await verifyPassword('an-old-Password-8', old));
  t.true(needsRehash(old));
});

test('malformed or hostile stored hashes are refused without running scrypt on them', async (t) => {
  const good = await hashPassword('correct-Horse-9');
  const parts = good.split('$');
  const variant = (i: number, v: string) => parts.map((x, j) => (j === i ? v : x)).join('$');
  for (const bad of ['', 'plain', 'bcrypt$x', variant(0, 'md5'), variant(1, '1000'), variant(1, String(2 ** 30)), variant(2, '0'),
    variant(3, '999'), variant(5, ''), `${good}$extra`]) {
    t.false(await verifyPassword('correct-Horse-9', bad), `refused: ${bad.slice(0, 30)}`);
    t.true(needsRehash(bad));
  }
});

test('strength: common and guessable passwords are refused, long unusual ones pass', async (t) => {
  t.is(MIN_SCORE, 3);
  const email = 'ana@example.com';
  for (const weak of ['password12', 'Password123', 'P@ssw0rd1234', 'qwertyuiop12', 'Passw0rd-long', 'iloveyou2024', 'aaaaaaaaaaaa', '1234567890']) {
    t.truthy(await passwordProblem(weak, email), `${weak} is refused`);
  }
  t.regex((await passwordProblem('password12', email))!, /too easy to guess/);
  t.regex((await passwordProblem('short', email))!, /at least 10/);
  t.regex((await passwordProblem('x'.repeat(201), email))!, /at most 200/);
  t.regex((await passwordProblem('ana-correct-Horse', email))!, /email name/);
  t.truthy(await passwordProblem('Ana Beltran 1990', 'ab@example.com', 'Ana Beltran'), 'the account name counts as a guessable word');
  for (const strong of ['correct-Horse-9', 'Tr0ub4dour&3', 'correct horse battery staple', 'violet-Kettle-41-sunder']) {
    t.is(await passwordProblem(strong, email), undefined, `${strong} is accepted`);
  }
});

test('the strength dictionaries are loaded at the first check, not when the node starts', (t) => {
  // A node that nobody registers on never holds them (3.4 MB of heap): what passwords.ts
  // resolves is seen by a module hook in a process of its own, before and after one check.
  const probe = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { if (specifier.startsWith('@zxcvbn-ts/')) seen.push(specifier); return next(specifier, context); } });
    const { passwordProblem } = await import('./http/passwords.ts');
    const before = seen.length;
    const problem = await passwordProblem('password12', 'ana@example.com');
    process.stdout.write(JSON.stringify({ before, after: [...new Set(seen)].sort(), problem }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { cwd: repoRoot, encoding: 'utf8' });
  const { before, after, problem } = JSON.parse(out) as { before: number; after: string[]; problem: string };
  t.is(before, 0, 'importing passwords.ts loads no dictionary');
  t.true(['@zxcvbn-ts/core', '@zxcvbn-ts/language-common'].every((m) => after.includes(m)), 'the first check loads zxcvbn and its dictionaries');
  t.regex(problem, /too easy to guess/);
});
