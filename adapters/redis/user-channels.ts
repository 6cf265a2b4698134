// Which users' notification channels a node's subscriber holds, as their sessions come and
// go here, and the commands that bring Redis in step: one subscribe and one unsubscribe at a
// time, each carrying every change since the last (a thousand drivers connecting at once are
// one SUBSCRIBE, not a thousand), and a failed one tried again a little later.

export interface UserChannelsOptions {
  subscribe(users: readonly string[]): Promise<void>;
  unsubscribe(users: readonly string[]): Promise<void>;
  onError(error: unknown): void;
  /** How long after a refused command the changes it carried are sent again. */
  readonly retryMs?: number;
}

const NONE: ReadonlySet<string> = new Set();

/** Channels per command: a node restarting under 100k sessions sends a hundred commands, not one huge one. */
const MAX_PER_COMMAND = 1_000;

export class UserChannels {
  readonly #o: UserChannelsOptions;
  /** Sessions here per user: the channels wanted. */
  readonly #sessions = new Map<string, number>();
  /** Channels Redis confirmed. */
  readonly #held = new Set<string>();
  /** Channels an unsubscribe in flight gives up: still held, but not for a session that comes now. */
  #dropping: ReadonlySet<string> = NONE;
  /** Users whose wanted and held may differ: only these are looked at, however many sessions there are. */
  readonly #changed = new Set<string>();
  readonly #waiting = new Map<string, (() => void)[]>();
  #scheduled = false;
  #running = false;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: UserChannelsOptions) {
    this.#o = options;
  }

  watched(user: string): boolean {
    return this.#sessions.has(user);
  }

  /**
   * One more session of `user` here. Settles once the user's channel is subscribed, or once
   * trying failed (the session is not held up by Redis; the channel is tried again).
   */
  watch(user: string): Promise<void> {
    this.#sessions.set(user, (this.#sessions.get(user) ?? 0) + 1);
    if ((this.#held.has(user) && !this.#dropping.has(user)) || this.#closed) return Promise.resolve();
    const settled = new Promise<void>((resolve) => {
      const list = this.#waiting.get(user);
      if (list) list.push(resolve); else this.#waiting.set(user, [resolve]);
    });
    this.#change(user);
    return settled;
  }

  /** One session of `user` fewer here; with the last, the channel is given up. */
  unwatch(user: string): void {
    const left = (this.#sessions.get(user) ?? 0) - 1;
    if (left > 0) { this.#sessions.set(user, left); return; }
    this.#sessions.delete(user);
    this.#change(user);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    for (const user of [...this.#waiting.keys()]) this.#settle(user);
  }

  #change(user: string): void {
    this.#changed.add(user);
    if (this.#closed || this.#scheduled || this.#running || this.#retry) return;
    this.#scheduled = true;
    // After the current tick, so that the sessions of one tick share a command.
    setImmediate(() => {
      this.#scheduled = false;
      void this.#run();
    });
  }

  async #run(): Promise<void> {
    this.#running = true;
    let failed = false;
    try {
      while (!this.#closed && !failed && this.#changed.size > 0) {
        const changed = this.#takeChanged();
        const add = changed.filter((u) => this.#sessions.has(u) && !this.#held.has(u));
        const drop = changed.filter((u) => !this.#sessions.has(u) && this.#held.has(u));
        failed = !(await this.#send(add, drop));
      }
    } finally {
      this.#running = false;
      if (failed && !this.#closed) {
        this.#retry = setTimeout(() => { this.#retry = undefined; void this.#run(); }, this.#o.retryMs ?? 1_000);
        this.#retry.unref();
      }
    }
  }

  /** The next users to bring in step, at most a command's worth, taken out of #changed. */
  #takeChanged(): string[] {
    const taken: string[] = [];
    for (const user of this.#changed) {
      if (taken.length === MAX_PER_COMMAND) break;
      taken.push(user);
    }
    for (const user of taken) this.#changed.delete(user);
    return taken;
  }

  /**
   * False when a command was refused: its users wait for the retry. A user watched again
   * while their unsubscribe is in flight waits for it (watch) and is subscribed again next.
   */
  async #send(add: readonly string[], drop: readonly string[]): Promise<boolean> {
    const added = await this.#command(add, this.#o.subscribe, (u) => this.#held.add(u));
    for (const u of add) this.#settle(u);
    this.#dropping = new Set(drop);
    const dropped = await this.#command(drop, this.#o.unsubscribe, (u) => this.#held.delete(u));
    this.#dropping = NONE;
    // Refused, the channel is still held: a session that came meanwhile has it.
    for (const u of drop) if (this.#held.has(u)) this.#settle(u);
    return added && dropped;
  }

  /** One command for `users`: done, each is marked; refused, each waits for the retry. */
  async #command(users: readonly string[], run: (users: readonly string[]) => Promise<void>, done: (user: string) => void): Promise<boolean> {
    if (users.length === 0) return true;
    try {
      await run(users);
      for (const u of users) done(u);
      return true;
    } catch (error) {
      this.#o.onError(error);
      for (const u of users) this.#changed.add(u);
      return false;
    }
  }

  #settle(user: string): void {
    const list = this.#waiting.get(user);
    this.#waiting.delete(user);
    for (const resolve of list ?? []) resolve();
  }
}
