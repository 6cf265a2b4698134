// The compact form of a soft record (command-log.ts appendSoft): the same messages as the
// JSON form `{"soft":[...]}`, in a quarter of the bytes and under half the CPU each way.
//
// Why: a soft record carries GPS fixes and drivers' cell copies, hundreds a record, to the
// node serving their shard. As JSON, each fix's doubles were printed and parsed as 17-digit
// decimals, every key and kind spelled out again, and the bytes then checksummed by kafkajs
// in JavaScript (CRC32C, per byte): building, checksumming and parsing the record were 15% of
// a Kafka-mode node's CPU in the fix bench. Here doubles are 8 raw bytes, and a string or an
// object's key list is written once per record, then named by its index.
//
// Layout: MAGIC, a varint count of messages, then each message as a value. A value is a tag
// byte and what the tag says:
//   NULL, FALSE, TRUE; F64 (8 bytes, little-endian); UINT / NEG_INT (varint of the magnitude,
//   integers up to 2^53); STR (varint byte length, UTF-8; takes the next string index) /
//   STR_REF (varint index); ARRAY (varint length, values); SHAPE (varint key count, the keys as
//   string values, then the values; takes the next shape index) / SHAPE_REF (varint index,
//   then the values).
// Decoding gives what JSON.parse gives for the JSON form. Messages JSON could not carry as they
// are (a class instance, a non-finite number, a BigInt) are not encoded here: encodeCompact
// answers undefined and the record goes as JSON, which says what JSON says of them.

import type { SoftMessage } from '../../runtime/ports.ts';

/** First bytes of a compact record: a zero byte, which no JSON text starts with, and the format's version. */
const MAGIC = [0x00, 0x01] as const;

const NULL = 0;
const FALSE = 1;
const TRUE = 2;
const F64 = 3;
const UINT = 4;
const NEG_INT = 5;
const STR = 6;
const STR_REF = 7;
const ARRAY = 8;
const SHAPE = 9;
const SHAPE_REF = 10;

/** Thrown inside the encoder for a value JSON would change or refuse: the record goes as JSON. */
const NOT_PLAIN = Symbol('not plain');

/** A node of the shapes seen in one record: the key lists, as a trie, so finding one builds no string. */
interface ShapeNode {
  readonly keys: readonly string[];
  readonly next: Map<string, ShapeNode>;
  index: number;
}

/** JSON leaves these keys out of an object. */
const skipped = (v: unknown) => v === undefined || typeof v === 'function' || typeof v === 'symbol';

class Writer {
  buf: Buffer;
  pos = 0;
  readonly #strings = new Map<string, number>();
  readonly #shapes: ShapeNode = { keys: [], next: new Map(), index: -1 };
  #shapeCount = 0;

  constructor(scratch: Buffer) {
    this.buf = scratch;
  }

  #room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  byte(x: number): void {
    this.#room(1);
    this.buf[this.pos++] = x;
  }

  /** x a non-negative safe integer. */
  varint(x: number): void {
    this.#room(8);
    while (x >= 0x80) {
      this.buf[this.pos++] = (x % 0x80) | 0x80;
      x = Math.floor(x / 0x80);
    }
    this.buf[this.pos++] = x;
  }

  string(s: string): void {
    const known = this.#strings.get(s);
    if (known !== undefined) { this.byte(STR_REF); this.varint(known); return; }
    this.#strings.set(s, this.#strings.size);
    this.byte(STR);
    if (!this.#ascii(s)) {
      // A lone surrogate: JSON escapes it and gives it back, UTF-8 would not (it becomes U+FFFD).
      if (!s.isWellFormed()) throw NOT_PLAIN;
      const bytes = Buffer.byteLength(s);
      this.varint(bytes);
      this.#room(bytes);
      this.pos += this.buf.write(s, this.pos, 'utf8');
    }
  }

  /**
   * A short ASCII string's length and bytes, written here: Buffer#write's argument handling
   * cost more than the copy for the ids, kinds and keys a record holds. False, having written
   * nothing, for any other string.
   */
  #ascii(s: string): boolean {
    const n = s.length;
    if (n > 127) return false;
    this.#room(n + 1);
    const buf = this.buf;
    const start = this.pos + 1;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return false;
      buf[start + i] = c;
    }
    buf[this.pos] = n;
    this.pos = start + n;
    return true;
  }

  value(v: unknown): void {
    switch (typeof v) {
      case 'string': return this.string(v);
      case 'number': return this.#number(v);
      case 'boolean': return this.byte(v ? TRUE : FALSE);
      case 'object':
        if (v === null) return this.byte(NULL);
        if (Array.isArray(v)) return this.#array(v);
        return this.#object(v as Record<string, unknown>);
      default: throw NOT_PLAIN;
    }
  }

  #number(v: number): void {
    if (Number.isSafeInteger(v)) {
      this.byte(v < 0 ? NEG_INT : UINT);
      this.varint(Math.abs(v));
      return;
    }
    if (!Number.isFinite(v)) throw NOT_PLAIN;
    this.#room(9);
    this.buf[this.pos++] = F64;
    this.pos = this.buf.writeDoubleLE(v, this.pos);
  }

  #array(a: readonly unknown[]): void {
    this.byte(ARRAY);
    this.varint(a.length);
    // JSON writes null for what it cannot hold in an array.
    for (let i = 0; i < a.length; i++) { const v = a[i]; if (skipped(v)) this.byte(NULL); else this.value(v); }
  }

  #object(o: Record<string, unknown>): void {
    const proto = Object.getPrototypeOf(o);
    // A Date, a Map, anything with toJSON: JSON's own rules apply, so the record goes as JSON.
    if ((proto !== Object.prototype && proto !== null) || typeof o.toJSON === 'function') throw NOT_PLAIN;
    let node = this.#shapes;
    for (const k in o) {
      if (skipped(o[k])) continue;
      let next = node.next.get(k);
      if (next === undefined) node.next.set(k, (next = { keys: [...node.keys, k], next: new Map(), index: -1 }));
      node = next;
    }
    if (node.index >= 0) {
      this.byte(SHAPE_REF);
      this.varint(node.index);
    } else {
      node.index = this.#shapeCount++;
      this.byte(SHAPE);
      this.varint(node.keys.length);
      for (const k of node.keys) this.string(k);
    }
    for (const k in o) { const v = o[k]; if (!skipped(v)) this.value(v); }
  }
}

const EMPTY = Object.freeze({});

/** Reused by every record of the process (a record is copied out of it): no 64 kB buffer per record. */
let scratch: Buffer = Buffer.allocUnsafe(64 * 1024);

/** The compact form of `messages`, or undefined when one holds something only JSON's rules say how to write. */
export function encodeCompact(messages: readonly SoftMessage[]): Buffer | undefined {
  // The encoder walks objects with for-in, which would also meet enumerable properties added
  // to Object.prototype, which JSON leaves out: with any, every record goes as JSON.
  for (const _ in EMPTY) return undefined;
  const w = new Writer(scratch);
  try {
    w.byte(MAGIC[0]);
    w.byte(MAGIC[1]);
    w.varint(messages.length);
    for (const m of messages) w.value(m);
  } catch (error) {
    if (error === NOT_PLAIN) return undefined;
    throw error;
  } finally {
    scratch = w.buf;
  }
  return Buffer.from(w.buf.subarray(0, w.pos));
}

/** True for a payload in the compact form (a JSON record starts with `{`). */
export function isCompact(payload: Buffer): boolean {
  return payload.length >= 2 && payload[0] === MAGIC[0] && payload[1] === MAGIC[1];
}

export class CompactDecodeError extends Error {
  override readonly name = 'CompactDecodeError';
}

/** The messages of a compact payload; CompactDecodeError when it is cut short or malformed. */
export function decodeCompact(payload: Buffer): SoftMessage[] {
  return new Reader(payload).messages();
}

class Reader {
  readonly #buf: Buffer;
  #pos: number = MAGIC.length;
  readonly #strings: string[] = [];
  readonly #shapes: (readonly string[])[] = [];

  constructor(buf: Buffer) {
    this.#buf = buf;
  }

  messages(): SoftMessage[] {
    const n = this.#varint();
    // Each message takes at least a byte: a count beyond the bytes left is a corrupt record, not an allocation.
    if (n > this.#buf.length - this.#pos) throw new CompactDecodeError(`${n} messages in ${this.#buf.length} bytes`);
    const out = new Array<SoftMessage>(n);
    for (let i = 0; i < n; i++) out[i] = this.#value() as SoftMessage;
    if (this.#pos !== this.#buf.length) throw new CompactDecodeError(`${this.#buf.length - this.#pos} bytes after the last message`);
    return out;
  }

  #byte(): number {
    if (this.#pos >= this.#buf.length) throw new CompactDecodeError('record cut short');
    return this.#buf[this.#pos++]!;
  }

  #varint(): number {
    let x = 0;
    let scale = 1;
    for (;;) {
      const b = this.#byte();
      x += (b & 0x7f) * scale;
      if (b < 0x80) return x;
      scale *= 0x80;
      if (scale >= 2 ** 56) throw new CompactDecodeError('varint too long');
    }
  }

  #end(n: number): number {
    const end = this.#pos + n;
    if (end > this.#buf.length) throw new CompactDecodeError('record cut short');
    return end;
  }

  #value(): unknown {
    const tag = this.#byte();
    switch (tag) {
      case NULL: return null;
      case FALSE: return false;
      case TRUE: return true;
      case F64: {
        const end = this.#end(8);
        const v = this.#buf.readDoubleLE(this.#pos);
        this.#pos = end;
        return v;
      }
      case UINT: return this.#varint();
      case NEG_INT: return -this.#varint();
      case STR: return this.#newString();
      case STR_REF: return this.#known(this.#strings, this.#varint(), 'string');
      case ARRAY: {
        const n = this.#varint();
        if (n > this.#buf.length - this.#pos) throw new CompactDecodeError(`array of ${n} in ${this.#buf.length} bytes`);
        const a = new Array<unknown>(n);
        for (let i = 0; i < n; i++) a[i] = this.#value();
        return a;
      }
      case SHAPE: return this.#fill(this.#newShape());
      case SHAPE_REF: return this.#fill(this.#known(this.#shapes, this.#varint(), 'shape'));
      default: throw new CompactDecodeError(`unknown tag ${tag}`);
    }
  }

  #newString(): string {
    const n = this.#varint();
    const end = this.#end(n);
    const s = this.#buf.toString('utf8', this.#pos, end);
    this.#pos = end;
    this.#strings.push(s);
    return s;
  }

  #newShape(): readonly string[] {
    const n = this.#varint();
    if (n > this.#buf.length - this.#pos) throw new CompactDecodeError(`shape of ${n} keys in ${this.#buf.length} bytes`);
    const keys: string[] = [];
    for (let i = 0; i < n; i++) {
      const key = this.#value();
      if (typeof key !== 'string') throw new CompactDecodeError('a key that is not a string');
      keys.push(key);
    }
    this.#shapes.push(keys);
    return keys;
  }

  #known<T>(table: readonly T[], index: number, what: string): T {
    if (index >= table.length) throw new CompactDecodeError(`${what} ${index} not defined yet`);
    return table[index]!;
  }

  #fill(keys: readonly string[]): Record<string, unknown> {
    const o: Record<string, unknown> = {};
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      // As JSON.parse does: an own property named __proto__, never the object's prototype.
      if (key === '__proto__') Object.defineProperty(o, key, { value: this.#value(), enumerable: true, writable: true, configurable: true });
      else o[key] = this.#value();
    }
    return o;
  }
}
