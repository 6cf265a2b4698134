// A dispatch node in this process with real HTTP and WebSocket clients against it.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { dispatchBehaviors, dispatchServices } from '../../actors/index.ts';
import { loadConfig } from '../../config/index.ts';
import { startNode, type RunningNode } from '../../node.ts';
import type { Logger } from '../../runtime/logger.ts';
import { freshDatabase } from './services.ts';
import { OpenApiValidator } from './openapi-validator.ts';

export interface Response {
  readonly status: number;
  readonly body: any;
  readonly headers: Headers;
}

export interface Exchange {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly body: unknown;
}

export interface EdgeNode {
  readonly node: RunningNode;
  readonly url: string;
  /** Every JSON response seen. */
  readonly exchanges: Exchange[];
  /**
   * Every answer `http` got, held to /openapi.json as a validating proxy would hold it
   * (test/helpers/openapi-validator.ts): what broke the contract, one line each.
   */
  readonly violations: string[];
  /** The validator those answers went through (its `seen` says which operations they covered). */
  validator(): Promise<OpenApiValidator>;
  token(sub: string, role: 'rider' | 'driver' | 'admin'): Promise<string>;
  http(method: string, path: string, options?: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<Response>;
  socket(token?: string): Promise<WsClient>;
  stop(): Promise<void>;
}

export const SECRET = 'edge-test-secret-of-good-length';

export async function startEdge(extra: Record<string, string> = {}, options: { logger?: Logger } = {}): Promise<EdgeNode> {
  const db = await freshDatabase();
  const config = loadConfig({
    MODE: 'embedded', DATABASE_URL: db.url, DATA_DIR: mkdtempSync(join(tmpdir(), 'edge-')), PORT: '0', HOST: '127.0.0.1',
    LOG_LEVEL: 'silent', SHARDS: '8', AUTH_DEV_TOKENS: 'true', JWT_SECRET: SECRET, OFFER_TIMEOUT_MS: '5000', DISPATCH_DEADLINE_MS: '10000',
    ...extra,
  });
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config), logger: options.logger });
  const exchanges: Exchange[] = [];
  const violations: string[] = [];
  let validator: Promise<OpenApiValidator> | undefined;
  const validatorOf = () => (validator ??= fetch(`${node.url}/openapi.json`).then(async (r) => new OpenApiValidator(await r.json())));
  const http: EdgeNode['http'] = async (method, path, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let body: string | undefined = options.raw;
    if (options.body !== undefined) { body = JSON.stringify(options.body); headers['content-type'] = 'application/json'; }
    if (options.raw !== undefined) headers['content-type'] ??= 'application/json';
    const res = await fetch(`${node.url}${path}`, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    if ((res.headers.get('content-type') ?? '').includes('json')) exchanges.push({ method: method.toLowerCase(), path: path.split('?')[0]!, status: res.status, body: parsed });
    const answer = { method, path: path.split('?')[0]!, status: res.status, headers: res.headers, body: parsed, text };
    violations.push(...(await validatorOf()).check(answer));
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    node, url: node.url, exchanges, violations, validator: validatorOf, http,
    async token(sub, role) {
      const res = await http('POST', '/v1/auth/token', { body: { sub, role } });
      if (res.status !== 200) throw new Error(`token: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.token as string;
    },
    socket: (token) => WsClient.signIn(`${node.url.replace('http', 'ws')}/v1/ws`, token),
    // Every suite on this client holds the node to its document: an answer that broke it fails the suite here.
    stop: async () => {
      await node.stop();
      await db.drop();
      if (violations.length > 0) throw new Error(`answers that break /openapi.json:\n${violations.join('\n')}`);
    },
  };
}

export class WsClient {
  readonly messages: any[] = [];
  readonly #socket: WebSocket;
  readonly #waiters = new Set<() => void>();
  closed: { code: number; reason: string } | undefined;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.on('message', (data) => {
      this.messages.push(JSON.parse(data.toString()));
      for (const w of this.#waiters) w();
    });
    socket.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; for (const w of this.#waiters) w(); });
  }

  static connect(url: string): Promise<WsClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.once('open', () => resolve(new WsClient(socket)));
      socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      socket.once('error', reject);
    });
  }

  /**
   * A socket signed in as clients do, with the token in its first message (a token in the URL is
   * refused unless WS_QUERY_TOKEN=true); rejects when the auth is refused. Without a token: bare.
   */
  static async signIn(url: string, token?: string): Promise<WsClient> {
    const client = await WsClient.connect(url);
    if (token === undefined) return client;
    const answer = await client.call({ type: 'auth', token }, '$auth');
    if (answer.type === 'ack') return client;
    client.close();
    throw new Error(`auth refused: ${answer.code}`);
  }

  send(message: unknown): void {
    this.#socket.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Resolves with the first message (seen or coming) that matches. */
  next(match: (m: any) => boolean, timeoutMs = 60_000, from = 0): Promise<any> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.messages.slice(from).find(match);
        if (found) { this.#waiters.delete(check); clearTimeout(timer); resolve(found); }
      };
      const timer = setTimeout(() => { this.#waiters.delete(check); reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages.slice(-5))}`)); }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Sends and waits for the ack or error carrying this ref. */
  async call(message: Record<string, unknown>, ref: string): Promise<any> {
    const from = this.messages.length;
    this.send({ ...message, ref });
    return this.next((m) => m.ref === ref && (m.type === 'ack' || m.type === 'error'), 60_000, from);
  }

  close(): void {
    this.#socket.close();
  }
}
