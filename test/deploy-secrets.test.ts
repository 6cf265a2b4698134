// No secret is written into the Dockerfile, docker-compose.yml or k8s/: they hold references
// (mounted files, a Secret created outside the repository) or placeholders the node refuses.

import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigError, loadConfig } from '../config/index.ts';

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** Names that hold a secret whatever the program: ours and the images' (POSTGRES_PASSWORD, ...). */
const SECRET_NAME = /SECRET|PASSWORD|PASSWD|PRIVATE|API_?KEY|(^|_)(KEY|TOKEN)$/i;
/** A URL with a password in it: scheme://user:password@host. */
const URL_PASSWORD = /[a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:[^\s@/]+@/i;
const PEM_PRIVATE = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** Every (name, value) pair of an environment, whichever form it is written in. */
function pairs(env: unknown): [string, string][] {
  if (Array.isArray(env)) {
    return env.map((e) => (typeof e === 'string' ? e.split(/=(.*)/s).slice(0, 2) as [string, string] : [e.name, String(e.value ?? '')]));
  }
  return Object.entries((env ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v ?? '')]);
}

/** A value that names where a secret is, not the secret: a file under /run/secrets or an unset-refusing ${VAR:?}. */
function isReference(name: string, value: string): boolean {
  if (name.endsWith('_FILE')) return value.startsWith('/run/secrets/');
  return /^\$\{[A-Z_]+:\?[^}]*\}$/.test(value);
}

test('the Dockerfile sets no secret, and the build context leaves secrets, .env and data out', (t) => {
  const dockerfile = read('Dockerfile');
  for (const line of dockerfile.split('\n')) {
    const m = /^\s*(ENV|ARG)\s+([A-Za-z_]\w*)/.exec(line);
    if (m) t.false(SECRET_NAME.test(m[2]!), `Dockerfile ${m[1]} ${m[2]} would bake a secret into the image`);
  }
  t.false(URL_PASSWORD.test(dockerfile) || PEM_PRIVATE.test(dockerfile), 'no credentials in the Dockerfile');
  const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
  for (const path of ['secrets', '.env', 'data']) t.true(ignored.includes(path), `.dockerignore leaves out ${path}`);
  const gitignored = read('.gitignore').split('\n').map((l) => l.trim().replace(/\/$/, ''));
  for (const path of ['secrets', '.env']) t.true(gitignored.includes(path), `.gitignore leaves out ${path}`);
});

test('docker-compose.yml: every secret is a mounted file, no URL carries a password', (t) => {
  const text = read('docker-compose.yml');
  const compose = parse(text, { merge: true }) as {
    services: Record<string, { environment?: unknown; secrets?: string[] }>;
    secrets?: Record<string, { file?: string; environment?: string }>;
  };
  let secretsSeen = 0;
  for (const [service, spec] of Object.entries(compose.services)) {
    for (const [name, value] of pairs(spec.environment)) {
      t.false(URL_PASSWORD.test(value), `${service} ${name} has a password in a URL`);
      if (!SECRET_NAME.test(name)) continue;
      secretsSeen++;
      t.true(isReference(name, value), `${service} ${name} must name a mounted secret (NAME_FILE=/run/secrets/...), not hold one`);
      if (name.endsWith('_FILE')) {
        const secret = value.slice('/run/secrets/'.length);
        t.true(spec.secrets?.includes(secret), `${service} mounts the secret ${secret} it reads`);
      }
    }
  }
  t.true(secretsSeen >= 4, 'the nodes\' and PostgreSQL\'s secrets were found and checked');
  for (const [name, source] of Object.entries(compose.secrets ?? {})) {
    t.regex(source.file ?? '', /^\.\/secrets\//, `secret ${name} is a file under ./secrets (git- and docker-ignored)`);
  }
  t.false(PEM_PRIVATE.test(text));
});

test('k8s/: secrets only in the Secret template, as placeholders the node refuses', (t) => {
  const dir = new URL('k8s/', root);
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  for (const file of files) {
    const text = readFileSync(new URL(file, dir), 'utf8');
    t.false(PEM_PRIVATE.test(text), `${file} holds no private key`);
    for (const doc of parseAllDocuments(text).map((d) => d.toJS() as Record<string, any>)) {
      if (doc?.kind === 'Secret') {
        for (const [name, value] of Object.entries(doc.stringData as Record<string, string>)) {
          t.false(URL_PASSWORD.test(value), `${file} ${name} has a password in a URL`);
          if (!SECRET_NAME.test(name)) continue;
          // Loaded alone, a placeholder is refused by name; a real-looking secret would load.
          const error = t.throws(() => loadConfig({ MODE: 'embedded', [name]: value }), { instanceOf: ConfigError });
          t.regex(error?.message ?? '', new RegExp(`${name} is a sample or placeholder`), `${file} ${name} is a placeholder`);
        }
        continue;
      }
      const env = [
        ...pairs(doc?.data),
        ...(doc?.spec?.template?.spec?.containers ?? []).flatMap((c: { env?: unknown }) => pairs(c.env)),
      ];
      for (const [name, value] of env) {
        t.false(URL_PASSWORD.test(value), `${file} ${name} has a password in a URL`);
        // NAME_FILE naming a file of the mounted Secret is where the secret is, not the secret.
        t.false(SECRET_NAME.test(name) && value !== '' && !isReference(name, value), `${file} sets ${name} outside the Secret`);
      }
    }
  }
});
