// The bench's PNG writer (bench/png.ts), checked without a browser or decoder library: a written
// PNG has the signature, a header of the raster's size and good CRCs, and inflates back to the
// pixels drawn; a corrupted byte is caught; the compare's chart draws even with no samples.

import test from 'ava';
import { inflateSync } from 'node:zlib';
import { encodePng, Raster, readPngHeader } from '../bench/png.ts';
import { dispatchPlot } from '../bench/dispatch-plot.ts';

test('a PNG has its signature, a header of the raster\'s size, good CRCs, and inflates to the pixels drawn', (t) => {
  const r = new Raster(37, 21);
  r.line(0, 0, 36, 20, [255, 0, 0]);
  r.text(2, 2, 'AB 12.5%', [0, 0, 0]);
  const png = encodePng(r);
  const header = readPngHeader(png);
  t.deepEqual(header, { width: 37, height: 21, bitDepth: 8, colourType: 2, chunks: ['IHDR', 'IDAT', 'IEND'] });
  // IDAT starts after the signature (8) and IHDR (12 + 13); its data after its own length and type.
  const idatLength = png.readUInt32BE(33);
  const rows = inflateSync(png.subarray(41, 41 + idatLength));
  t.is(rows.length, 21 * (37 * 3 + 1), 'one filter byte and 37 RGB pixels per row');
  t.deepEqual([...rows.subarray(1, 4)], [255, 0, 0], 'the line\'s first pixel');
  t.deepEqual([...rows.subarray(20 * 112 + 1 + 36 * 3, 20 * 112 + 1 + 37 * 3)], [255, 0, 0], 'the line\'s last pixel');
});

test('a corrupted PNG is refused with the chunk that is wrong', (t) => {
  const png = encodePng(new Raster(8, 8));
  const bad = Buffer.from(png);
  bad[20] = bad[20]! ^ 0xff; // inside IHDR's data
  t.throws(() => readPngHeader(bad), { message: /chunk IHDR: CRC/ });
  t.throws(() => readPngHeader(png.subarray(0, png.length - 6)), { message: /truncated|past the end/ });
  t.throws(() => readPngHeader(Buffer.from('GIF89a...')), { message: /signature/ });
});

test('the compare\'s chart draws with no samples at all (a run that measured nothing is still plotted)', (t) => {
  const png = encodePng(dispatchPlot([
    { load: 'near', mode: 'greedy', bookingsPerMin: 30, pickupKm: [], pickupSimS: [] },
    { load: 'near', mode: 'batched', bookingsPerMin: 30, pickupKm: [1.2], pickupSimS: [80] },
  ], 'EMPTY'));
  t.like(readPngHeader(png), { width: 1200, height: 870 });
});
