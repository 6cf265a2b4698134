// Reading back one segment file of the file command log (command-log.ts): JSON lines
// `{"o": offset, "c": command}`, each written whole, newline last, before its append resolved.
// What a crash can leave is told apart from what it cannot: bytes after the last newline are a
// record cut short (never acknowledged); a line that is not a record is damage. Versions before
// torn tails were cut appended the next record to such a tail, so a line may hold a torn record
// with a whole one glued after it: the whole one was acknowledged, and is kept.

import { readFileSync } from 'node:fs';
import type { CommandEnvelope } from '../../runtime/ports.ts';

export interface SegmentEntry {
  readonly o: number;
  readonly c: CommandEnvelope;
}

export interface SegmentContents {
  readonly entries: SegmentEntry[];
  /** Bytes of whole lines: where the next record goes once the torn bytes are cut. */
  readonly bytes: number;
  /** Bytes after the last newline: a record whose write was cut short. */
  readonly tornBytes: number;
  /** Line numbers (from 1) of lines that held a torn record glued to a whole one; the whole one is in `entries`. */
  readonly salvaged: number[];
  /** Line numbers (from 1) of whole lines that hold no record. */
  readonly unreadable: number[];
}

const NEWLINE = 0x0a;
const RECORD_START = '{"o":';

export function readSegment(path: string): SegmentContents {
  const content = readFileSync(path);
  const bytes = content.lastIndexOf(NEWLINE) + 1;
  const entries: SegmentEntry[] = [];
  const salvaged: number[] = [];
  const unreadable: number[] = [];
  const lines = content.subarray(0, bytes).toString('utf8').split('\n');
  lines.pop(); // after the last newline: empty
  lines.forEach((line, i) => {
    if (line === '') return;
    const whole = parseRecord(line);
    if (whole) { entries.push(whole); return; }
    const glued = gluedRecord(line);
    if (glued) { entries.push(glued); salvaged.push(i + 1); return; }
    unreadable.push(i + 1);
  });
  return { entries, bytes, tornBytes: content.length - bytes, salvaged, unreadable };
}

function parseRecord(text: string): SegmentEntry | undefined {
  let value: unknown;
  try { value = JSON.parse(text); } catch { return undefined; }
  const entry = value as Partial<SegmentEntry> | null;
  const ok = typeof entry === 'object' && entry !== null && Number.isSafeInteger(entry.o) && entry.o! >= 0 &&
    typeof entry.c === 'object' && entry.c !== null && typeof entry.c.id === 'string';
  return ok ? (entry as SegmentEntry) : undefined;
}

/** The first whole record that ends the line, after a torn one: a start inside the torn part leaves its braces unbalanced. */
function gluedRecord(line: string): SegmentEntry | undefined {
  for (let at = line.indexOf(RECORD_START, 1); at > 0; at = line.indexOf(RECORD_START, at + 1)) {
    const entry = parseRecord(line.slice(at));
    if (entry) return entry;
  }
  return undefined;
}
