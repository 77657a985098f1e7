/** Left-aligned columns separated by two spaces; the header row is upper-cased */
export function table (header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header.map((h) => h.toUpperCase()), ...rows]
  const widths = header.map((_, col) => Math.max(...all.map((row) => [...(row[col] ?? '')].length)))
  return all.map((row) => row.map((cell, col) => col === row.length - 1 ? cell : cell.padEnd(widths[col] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

/** The first line of a message that may hold more (a console tail), for one table cell */
export function firstLine (text: string | undefined): string {
  return (text ?? '').split('\n', 1)[0] ?? ''
}
