// The metric names a PromQL expression reads, without a PromQL parser: strings, label
// matchers, range selectors and label lists (by, without, on, ignoring, group_left/right)
// are removed first; what is left are metric names, function names (followed by '('),
// keywords and numbers.

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\w+/g, ' ');
  const names = new Set<string>();
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = bare.slice(m.index + m[0].length);
    if (/^\s*\(/.test(rest) || KEYWORDS.has(m[0].toLowerCase())) continue;
    // A number's exponent or suffix (1e3, 5m in a duration already removed) is not a name.
    if (m.index > 0 && /[0-9.]/.test(bare[m.index - 1]!)) continue;
    names.add(m[0]);
  }
  return [...names];
}

/**
 * The metric families a Prometheus text exposition declares (# TYPE lines), with the
 * sample names each may show: a histogram's _bucket, _sum and _count, a summary's _sum and _count.
 */
export function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

/** The value of one sample line (`name{labels} value`), or undefined when there is none. */
export function sample(exposition: string, nameAndLabels: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${nameAndLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1));
}
