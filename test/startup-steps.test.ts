// runtime/startup.ts's steps against a start-up stopped by a signal: the wait for a dependency
// ends at once, an attempt in flight is not waited for unless the step must finish it, and
// any other failure is still what the step throws. (Through a real node: test/startup-wait.test.ts.)

import test from 'ava';
import { pino } from 'pino';
import { DependencyUnreachableError } from '../runtime/errors.ts';
import { startup, StartupStoppedError } from '../runtime/startup.ts';

const logger = pino({ level: 'silent' });
const unreachable = () => Promise.reject(new DependencyUnreachableError('PostgreSQL', '127.0.0.1:1', new Error('connect ECONNREFUSED')));

test('a step waiting for a dependency fails with StartupStoppedError once the signal aborts, and tries no more', async (t) => {
  const stop = new AbortController();
  const boot = startup({ timeoutMs: 600_000, logger, minDelayMs: 60_000, maxDelayMs: 60_000, signal: stop.signal });
  let attempts = 0;
  const step = boot.step(() => { attempts++; return unreachable(); });
  await new Promise((r) => setTimeout(r, 50)); // the first attempt failed: it sleeps its 60 s
  t.is(attempts, 1);
  stop.abort('SIGTERM');
  const error = await t.throwsAsync(step, { instanceOf: StartupStoppedError });
  t.is(error!.reason, 'SIGTERM');
  t.is(attempts, 1);
});

test('a step of a start-up already stopped does not begin', async (t) => {
  const stop = new AbortController();
  stop.abort('SIGINT');
  let ran = false;
  await t.throwsAsync(startup({ timeoutMs: 1_000, logger, signal: stop.signal }).step(async () => { ran = true; }), { instanceOf: StartupStoppedError });
  t.false(ran);
});

test('an attempt in flight is not waited for, unless the step must finish it (and then its result is kept)', async (t) => {
  const stop = new AbortController();
  const boot = startup({ timeoutMs: 600_000, logger, signal: stop.signal });
  let finishAttempt!: (value: string) => void;
  const slow = () => new Promise<string>((resolve) => { finishAttempt = resolve; });
  const abandoned = boot.step(slow);
  stop.abort('SIGTERM');
  await t.throwsAsync(abandoned, { instanceOf: StartupStoppedError });
  finishAttempt('late');

  const other = new AbortController();
  const finishing = startup({ timeoutMs: 600_000, logger, signal: other.signal }).step(slow, { finish: true });
  other.abort('SIGTERM');
  finishAttempt('opened');
  t.is(await finishing, 'opened', 'the attempt ran to its end');
});

test('a failure that is not a wait is still thrown as it is after a stop', async (t) => {
  const stop = new AbortController();
  const boot = startup({ timeoutMs: 600_000, logger, signal: stop.signal });
  await t.throwsAsync(boot.step(async () => { stop.abort('SIGTERM'); throw new Error('bad credentials'); }, { finish: true }), { message: 'bad credentials' });
});
