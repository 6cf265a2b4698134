// What a validating proxy (Stoplight Prism's `proxy --errors`, say) checks of every answer
// that passes through it, run on the answers a test client sees: the answer belongs to a
// documented operation; its status is one the operation documents (the document has no
// `default`, so an undocumented status is a violation); each documented header it must
// carry is there and matches its schema; its media type is the documented one and its body
// validates against the documented schema (ajv, JSON Schema 2020-12, formats checked).
// Pages and documents the node serves besides the API (/docs, /ops, ...) are not API
// operations and pass unchecked; a path nobody serves must be answered 404, a method a
// documented path does not take 405, with the contract's error body.

import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
/** Served by the node for people and tools, not operations of the API. */
const NOT_OPERATIONS = /^\/(openapi\.json|asyncapi\.json|docs(\/.*)?|redoc(\/.*)?|ops(\/.*)?)$/;

export interface Answer {
  readonly method: string;
  /** The request path, without the query. */
  readonly path: string;
  readonly status: number;
  readonly headers: Headers;
  /** The body as sent: parsed when it is JSON. */
  readonly body: unknown;
  readonly text: string;
}

interface Operation {
  readonly operationId: string;
  readonly responses: Record<string, { headers?: Record<string, any>; content?: Record<string, { schema: unknown }> }>;
}

export class OpenApiValidator {
  readonly #doc: any;
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true });
  readonly #compiled = new Map<string, ValidateFunction>();
  readonly #paths: { template: string; pattern: RegExp; literal: boolean }[];
  /** operationId -> statuses seen, for a test to say which operations its traffic covered. */
  readonly seen = new Map<string, Set<number>>();

  constructor(doc: any) {
    this.#doc = doc;
    addFormats(this.#ajv);
    this.#ajv.addSchema({ $id: 'doc', components: doc.components });
    this.#paths = Object.keys(doc.paths).map((template) => ({
      template,
      literal: !template.includes('{'),
      pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
    }));
  }

  /** Every operation of the document, as METHOD /path -> operationId. */
  operations(): Map<string, string> {
    const all = new Map<string, string>();
    for (const [path, item] of Object.entries(this.#doc.paths as Record<string, Record<string, Operation>>)) {
      for (const [method, op] of Object.entries(item)) if (METHODS.includes(method)) all.set(`${method.toUpperCase()} ${path}`, op.operationId);
    }
    return all;
  }

  /** What is wrong with this answer, one line each; empty when it keeps the contract. */
  check(answer: Answer): string[] {
    const where = `${answer.method.toUpperCase()} ${answer.path} -> ${answer.status}`;
    if (NOT_OPERATIONS.test(answer.path)) return [];
    // A literal path wins over a template (/v1/bookings over /v1/bookings/{id} cannot clash, but be exact).
    const match = this.#paths.find((p) => p.literal && p.pattern.test(answer.path)) ?? this.#paths.find((p) => p.pattern.test(answer.path));
    const op: Operation | undefined = match && this.#doc.paths[match.template][answer.method.toLowerCase()];
    if (!op) {
      const expected = !match ? [404] : [405, 501];
      if (expected.includes(answer.status) && this.#isError(answer)) return [];
      const what = match ? `for ${answer.method} on ${match.template}` : 'has this path';
      return [`${where}: no documented operation ${what}, yet the answer is not a ${expected.join(' or ')} error`];
    }
    const statuses = this.seen.get(op.operationId) ?? new Set<number>();
    statuses.add(answer.status);
    this.seen.set(op.operationId, statuses);
    const response = op.responses[String(answer.status)];
    if (!response) return [`${where}: status ${answer.status} is not documented for ${op.operationId} (documented: ${Object.keys(op.responses).join(', ')})`];
    return [...this.#checkHeaders(where, response.headers ?? {}, answer.headers), ...this.#checkBody(where, response.content, answer)];
  }

  #isError(answer: Answer): boolean {
    return this.#validator({ $ref: '#/components/schemas/Error' })(answer.body) && /^application\/json/.test(answer.headers.get('content-type') ?? '');
  }

  #checkHeaders(where: string, documented: Record<string, any>, headers: Headers): string[] {
    const problems: string[] = [];
    for (const [name, declared] of Object.entries(documented)) {
      const header = declared.$ref ? this.#resolve(declared.$ref) : declared;
      const value = headers.get(name);
      if (value === null) {
        if (header.required) problems.push(`${where}: required header ${name} is missing`);
        continue;
      }
      const schema = header.schema ?? {};
      const typed = ['integer', 'number'].includes(schema.type) && /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
      const validate = this.#validator(schema);
      if (!validate(typed)) problems.push(`${where}: header ${name}: ${JSON.stringify(value)} ${this.#ajv.errorsText(validate.errors)}`);
    }
    return problems;
  }

  #checkBody(where: string, content: Record<string, { schema: unknown }> | undefined, answer: Answer): string[] {
    const type = (answer.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!content) return answer.text === '' ? [] : [`${where}: a body (${type || 'no Content-Type'}) where the document says none`];
    const media = content[type];
    if (!media) return [`${where}: Content-Type ${type || '(none)'} is not documented (documented: ${Object.keys(content).join(', ')})`];
    const validate = this.#validator(media.schema);
    const value = type === 'application/json' ? answer.body : answer.text;
    return validate(value) ? [] : [`${where}: body does not match the document: ${this.#ajv.errorsText(validate.errors)}`];
  }

  #resolve(ref: string): any {
    return ref.replace(/^#\//, '').split('/').reduce((node: any, key) => node?.[key], this.#doc);
  }

  #validator(schema: unknown): ValidateFunction {
    const text = JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/');
    let compiled = this.#compiled.get(text);
    if (!compiled) this.#compiled.set(text, (compiled = this.#ajv.compile(JSON.parse(text))));
    return compiled;
  }
}
