// Occupied cells of the embedded node: one process owns every cell actor, and a
// cell can only answer drivers it was told of in this process (cells are soft
// state, empty after a restart), each of which marked it here first. So an
// in-memory set is complete and never stale: a cell shows at once.

import type { OccupiedCells } from '../../runtime/ports.ts';

export class InProcessOccupiedCells implements OccupiedCells {
  readonly #cells = new Set<string>();

  mark(cell: string): void {
    this.#cells.add(cell);
  }

  filter(cells: readonly string[]): readonly string[] {
    return cells.filter((c) => this.#cells.has(c));
  }

  get size(): number {
    return this.#cells.size;
  }

  async close(): Promise<void> {}
}
