// The soft path: soft state (GPS fixes, a driver's copy in its cell) with no command id,
// dedupe, journal row or log record of its own. Straight to the entity when this node
// serves its shard; else batched per shard into one log record per tick for the owner.
// A soft message may be lost (a rebalance, a crash): receivers keep the newest by the
// message's own timestamp, and the next one repairs it. A message whose outcome would be
// journaled (events, a refusal, timers, durable tells) is not applied softly: it is sent
// as a command instead and applied as one.

import { randomId } from './random-id.ts';
import type { EntityRef } from '../actors/behavior.ts';
import { entityKey } from './entity.ts';
import type { SoftOutcome } from './entity-actor.ts';
import { LogUnavailableError } from './errors.ts';
import type { CommandLog, ShardId, SoftMessage } from './ports.ts';
import type { ShardHost } from './shard-host.ts';

/**
 * What became of a soft message here: `applied` by its entity on this node; `durable` when
 * its outcome had to be journaled, so it was sent as a command instead (and applied as one);
 * `forwarded` in a soft record to the shard's owner; `dropped` when nobody could take it now
 * (the entity was failing or being stopped, the shard between owners on a node without a
 * log to forward it through).
 */
export type SoftDelivery = SoftOutcome | 'forwarded';

const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | undefined)?.then === 'function';

/** Soft messages per log record at most (a fix is ~150 bytes: well under a request's budget). */
const SOFT_RECORD_MAX = 1_000;
/** Entities' soft tells in flight on a node before senders wait (briefly) for room. */
const SOFT_IN_FLIGHT_MAX = 5_000;
const SOFT_WAIT_MS = 1_000;

export interface SoftPathOptions {
  readonly log: Pick<CommandLog, 'append' | 'appendSoft'>;
  readonly host: Pick<ShardHost, 'knows' | 'soft' | 'activeShard'>;
  readonly shardOf: (ref: EntityRef) => ShardId;
  readonly holds: (shard: ShardId) => boolean;
  /** True once the node has fenced every shard to stop: nothing is forwarded any more. */
  readonly closed: () => boolean;
  readonly onError?: (error: unknown, context: string) => void;
}

export interface SoftStats {
  readonly softApplied: number;
  readonly softDurable: number;
  readonly softForwarded: number;
  readonly softDropped: number;
}

/**
 * One record's soft messages, and their one outcome: every message of the record shares the
 * promise (a promise and a callback per forwarded message were garbage on every fix that
 * crossed), and entities' tells among them are settled with it, not one by one.
 */
interface Outgoing {
  readonly messages: SoftMessage[];
  /** How many of the messages are entities' tells (tellFrom). */
  tells: number;
  readonly done: Promise<'forwarded'>;
  readonly settle: (error?: unknown) => void;
}

export class SoftPath {
  readonly #o: SoftPathOptions;
  #applied = 0;
  #durable = 0;
  #forwarded = 0;
  #dropped = 0;
  /** Soft messages for shards served elsewhere, per shard, until this tick ends (one record each). */
  readonly #out = new Map<ShardId, Outgoing>();
  #flush: NodeJS.Immediate | undefined;
  /** Soft tells from entities not handled yet, and senders waiting for fewer (see #room). */
  #inFlight = 0;
  #waiting: (() => void)[] = [];

  constructor(options: SoftPathOptions) {
    this.#o = options;
  }

  stats(): SoftStats {
    return { softApplied: this.#applied, softDurable: this.#durable, softForwarded: this.#forwarded, softDropped: this.#dropped };
  }

  /**
   * Delivers one soft message: to its entity here, or forwarded to its shard's owner. The
   * outcome is plain when the entity took it at once (ShardHost.soft), else a promise.
   */
  deliver(m: SoftMessage): SoftDelivery | Promise<SoftDelivery> {
    return this.#deliver(m.to, m.message, m.at);
  }

  /** deliver, without a message object to carry the three (one per fix). */
  deliverTo(to: EntityRef, message: unknown, at: number): SoftDelivery | Promise<SoftDelivery> {
    return this.#deliver(to, message, at);
  }

  #deliver(to: EntityRef, message: unknown, at: number): SoftDelivery | Promise<SoftDelivery> {
    // An entity active here knows its shard: no hashing (BigInt, and H3 for cells) per soft message.
    const shard = this.#shardOf(to);
    if (this.#o.holds(shard)) return this.#apply(shard, to, message, at);
    return this.#forward(shard, to, message, at, false);
  }

  /** Served elsewhere, or between owners: the log takes it to whoever serves the shard next, in its record's promise. */
  #forward(shard: ShardId, to: EntityRef, message: unknown, at: number, tell: boolean): 'dropped' | Promise<'forwarded'> {
    if (!this.#o.log.appendSoft || this.#o.closed()) { this.#dropped++; return 'dropped'; }
    const batch = this.#queue(shard, { to, message, at });
    if (tell) batch.tells++;
    return batch.done;
  }

  /**
   * Entities' soft tells: not waited for (a sender must not wait for its receiver's mailbox:
   * two entities telling each other would deadlock), but past SOFT_IN_FLIGHT_MAX unhandled
   * ones the sender waits for room, at most SOFT_WAIT_MS, so a fast sender (drivers) cannot
   * queue unboundedly ahead of slower receivers (cells).
   */
  tellFrom(from: EntityRef, tells: readonly { to: EntityRef; message: unknown }[], at: number): Promise<void> | undefined {
    // Indexed, and nothing here captured by a closure: a closure over the loop's tell made a
    // context per tell, taken or not (most tells are handled at once).
    for (let i = 0; i < tells.length; i++) {
      const t = tells[i]!;
      this.#inFlight++;
      let delivered: SoftDelivery | Promise<SoftDelivery>;
      try {
        const shard = this.#shardOf(t.to);
        // Forwarded, it is settled with its record (#sent); dropped, at once.
        if (!this.#o.holds(shard)) { if (this.#forward(shard, t.to, t.message, at, true) === 'dropped') this.#settled(); continue; }
        delivered = this.#apply(shard, t.to, t.message, at);
      } catch (e) {
        delivered = Promise.reject(e);
      }
      if (isPromise(delivered)) this.#settleLater(from, t.to, delivered); else this.#settled();
    }
    return this.#room();
  }

  #settleLater(from: EntityRef, to: EntityRef, delivered: Promise<SoftDelivery>): void {
    delivered
      .catch((e) => this.#o.onError?.(e, `soft tell from ${entityKey(from)} to ${entityKey(to)}`))
      .finally(() => this.#settled());
  }

  /**
   * Soft messages of a record from another node, for a shard this node serves. A loop that
   * waits only for the messages not handled at once: an async function and a promise per
   * message (hundreds a record, most applied at once) were garbage on every fix that crossed.
   */
  received(shard: ShardId, messages: readonly SoftMessage[]): Promise<void> {
    let later: Promise<void>[] | undefined;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      // A shard lost meanwhile (or a record naming an entity of another shard) is not served here.
      if (!this.#o.holds(shard) || this.#shardOf(m.to) !== shard) { this.#dropped++; continue; }
      let delivered: SoftDelivery | Promise<SoftDelivery>;
      try {
        delivered = this.#apply(shard, m.to, m.message, m.at);
      } catch (e) {
        delivered = Promise.reject(e);
      }
      if (isPromise(delivered)) (later ??= []).push(this.#receivedLater(m, delivered));
    }
    return later ? Promise.all(later).then(() => undefined) : Promise.resolve();
  }

  #receivedLater(m: SoftMessage, delivered: Promise<SoftDelivery>): Promise<void> {
    return delivered.then(() => undefined, (e: unknown) => {
      this.#dropped++;
      this.#o.onError?.(e, `soft message to ${entityKey(m.to)}: sending it as a command failed`);
    });
  }

  /**
   * The shard of a received message's entity: the one it is active in here, else its hash. An
   * entity is only ever activated in its own shard, so the two agree; the lookup spares the
   * hashing (BigInt, and H3 for cells), which was 6% of a node's CPU receiving fixes.
   */
  #shardOf(to: EntityRef): ShardId {
    return this.#o.host.activeShard(to) ?? this.#o.shardOf(to);
  }

  /** Hands a soft message to its entity here; an outcome that must be journaled goes through the log as a command. */
  #apply(shard: ShardId, to: EntityRef, message: unknown, at: number): SoftDelivery | Promise<SoftDelivery> {
    if (!this.#o.host.knows(to.kind)) { this.#dropped++; return 'dropped'; }
    let outcome: SoftOutcome | Promise<SoftOutcome>;
    try {
      outcome = this.#o.host.soft(to, shard, message);
    } catch {
      outcome = 'dropped';
    }
    if (isPromise(outcome)) return outcome.catch((): SoftOutcome => 'dropped').then((o) => this.#counted(shard, to, message, at, o));
    return this.#counted(shard, to, message, at, outcome);
  }

  /** Counts what became of a soft message here; `durable` goes to the log as a command first. */
  #counted(shard: ShardId, to: EntityRef, message: unknown, at: number, outcome: SoftOutcome): SoftDelivery | Promise<SoftDelivery> {
    if (outcome === 'applied') { this.#applied++; return outcome; }
    if (outcome === 'dropped') { this.#dropped++; return outcome; }
    return this.#o.log.append(shard, { id: randomId(), to, message, at }).then(() => {
      this.#durable++;
      return outcome;
    });
  }

  #room(): Promise<void> | undefined {
    return this.#inFlight < SOFT_IN_FLIGHT_MAX ? undefined : this.#waitForRoom();
  }

  /** Apart from #room: its closures would make #room take a context at every call, room or not. */
  #waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SOFT_WAIT_MS);
      this.#waiting.push(() => { clearTimeout(timer); resolve(); });
    });
  }

  #settled(count = 1): void {
    this.#inFlight -= count;
    if (this.#inFlight < SOFT_IN_FLIGHT_MAX / 2 && this.#waiting.length > 0) {
      const waiting = this.#waiting;
      this.#waiting = [];
      for (const go of waiting) go();
    }
  }

  /** Soft messages for another node's shard wait for the end of this tick, then go as one record per shard. */
  #queue(shard: ShardId, m: SoftMessage): Outgoing {
    let batch = this.#out.get(shard);
    if (!batch) {
      let settle!: (error?: unknown) => void;
      const done = new Promise<'forwarded'>((resolve, reject) => { settle = (error) => (error === undefined ? resolve('forwarded') : reject(error)); });
      // A record of tells only has no other reader: its failure is reported by #sent, not left unhandled.
      done.catch(() => undefined);
      batch = { messages: [], tells: 0, done, settle };
      this.#out.set(shard, batch);
      this.#flush ??= setImmediate(() => this.#flushAll());
    }
    batch.messages.push(m);
    // Sent on the next turn (#send never settles at once): a tell counted after this is counted with it.
    if (batch.messages.length >= SOFT_RECORD_MAX) { this.#out.delete(shard); this.#send(shard, batch); }
    return batch;
  }

  #flushAll(): void {
    this.#flush = undefined;
    const batches = [...this.#out];
    this.#out.clear();
    for (const [shard, batch] of batches) this.#send(shard, batch);
  }

  #send(shard: ShardId, batch: Outgoing): void {
    let appended: Promise<void>;
    try {
      appended = this.#o.log.appendSoft!(shard, batch.messages);
    } catch (error) {
      // Thrown rather than rejected (a message the log cannot write): the record's senders must still hear.
      appended = Promise.reject(error);
    }
    appended.then(
      () => this.#sent(shard, batch),
      (error: unknown) => this.#sent(shard, batch, new LogUnavailableError(
        `the command log did not take ${batch.messages.length} soft message(s): ${(error as Error)?.message ?? error}`, { cause: error },
      )),
    );
  }

  /** A record's outcome: its messages counted forwarded (or not), its senders told, its tells settled. */
  #sent(shard: ShardId, batch: Outgoing, error?: unknown): void {
    if (error === undefined) this.#forwarded += batch.messages.length;
    batch.settle(error);
    if (batch.tells === 0) return;
    if (error !== undefined) this.#o.onError?.(error, `${batch.tells} soft tell(s) to shard ${shard}`);
    this.#settled(batch.tells);
  }
}
