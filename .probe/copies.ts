// Probe: driver copies applied in cells/s, 100k METRO city, several rounds (first cold).
import { latLngToCell } from 'h3-js';
import { benchRig, CELL_RES } from '../bench/rig.ts';
import { city, clockAt, copyOf, METRO } from '../bench/city.ts';
import type { DriverCopy } from '../actors/cell.ts';

const fleet = city(METRO, 100_000, 1);
const clock = clockAt(Date.now());
const copies: DriverCopy[] = [];
for (let i = 0; i < fleet.n; i++) { const c = copyOf(fleet, i, clock); if (c) copies.push(c); }
const rig = await benchRig({ maxActiveEntities: 200_000 });
for (let round = 0; round < Number(process.env.ROUNDS ?? 3); round++) {
  const t0 = performance.now();
  for (let i = 0; i < copies.length; i += 5_000) {
    const sent: Promise<string>[] = [];
    for (const copy of copies.slice(i, i + 5_000)) {
      sent.push(rig.region.tellSoft({ kind: 'cell', id: latLngToCell(copy.lat, copy.lng, CELL_RES) }, { type: 'driver.upsert', driver: { ...copy, seenAt: copy.seenAt + round } }));
    }
    await Promise.all(sent);
  }
  const s = (performance.now() - t0) / 1000;
  console.log(`round ${round}: ${Math.round(copies.length / s)} copies/s`);
}
process.exit(0);
