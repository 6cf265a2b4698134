// A small raster plotter for the bench's charts, so a PNG is written with no browser, no native
// binary and nothing fetched: an RGB canvas with lines, rectangles and a 5x7 pixel font, and a
// PNG encoder on node:zlib (deflate and CRC-32). readPngHeader is for specs: it checks what
// was written (signature, every chunk's CRC, the header's size) without a decoder library.

import { crc32, deflateSync } from 'node:zlib';

export type Rgb = readonly [number, number, number];

// 5x7 glyphs, one hex byte per row (the low 5 bits, left pixel first). Lower case is drawn as upper case.
const GLYPHS: Readonly<Record<string, string>> = {
  '0': '0E11131519110E', '1': '040C040404040E', '2': '0E11010204081F', '3': '1F02040201110E',
  '4': '02060A121F0202', '5': '1F101E0101110E', '6': '0608101E11110E', '7': '1F010204080808', '8': '0E11110E11110E',
  '9': '0E11110F01020C', 'A': '0E1111111F1111', 'B': '1E11111E11111E', 'C': '0E11101010110E', 'D': '1C12111111121C',
  'E': '1F10101E10101F', 'F': '1F10101E101010', 'G': '0E11101711110F', 'H': '1111111F111111', 'I': '0E04040404040E',
  'J': '0702020202120C', 'K': '11121418141211', 'L': '1010101010101F', 'M': '111B1515111111', 'N': '11111915131111',
  'O': '0E11111111110E', 'P': '1E11111E101010', 'Q': '0E11111115120D', 'R': '1E11111E141211', 'S': '0F10100E01011E',
  'T': '1F040404040404', 'U': '1111111111110E', 'V': '11111111110A04', 'W': '1111111515150A', 'X': '11110A040A1111',
  'Y': '1111110A040404', 'Z': '1F01020408101F', ' ': '00000000000000', '.': '00000000000C0C', '-': '0000001F000000',
  '%': '18190204081303', '/': '00010204081000', ':': '000C0C000C0C00', '(': '02040808080402', ')': '08040202020408',
  ',': '000000000C0408', '+': '0004041F040400', '=': '00001F001F0000', '>': '08040201020408', '<': '02040810080402',
  '_': '0000000000001F', '?': '0E110102040004',
};

export const GLYPH_W = 6; // 5 pixels and a space
export const GLYPH_H = 7;

export class Raster {
  readonly width: number;
  readonly height: number;
  /** RGB, row by row. */
  readonly pixels: Uint8Array;

  constructor(width: number, height: number, background: Rgb = [255, 255, 255]) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new Error(`bad raster size ${width}x${height}`);
    this.width = width;
    this.height = height;
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  /** Off-canvas pixels are dropped, so callers clip nothing. */
  set(x: number, y: number, c: Rgb): void {
    const px = Math.round(x), py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return;
    const i = (py * this.width + px) * 3;
    this.pixels[i] = c[0]; this.pixels[i + 1] = c[1]; this.pixels[i + 2] = c[2];
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let yy = Math.round(y); yy < Math.round(y + h); yy++) for (let xx = Math.round(x); xx < Math.round(x + w); xx++) this.set(xx, yy, c);
  }

  /** A line `thickness` pixels wide (a square pen stepped along it). */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const half = Math.floor((thickness - 1) / 2);
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps, y = y0 + ((y1 - y0) * s) / steps;
      this.fillRect(Math.round(x) - half, Math.round(y) - half, thickness, thickness, c);
    }
  }

  /** Joined segments through `points`. */
  polyline(points: readonly (readonly [number, number])[], c: Rgb, thickness = 1): void {
    for (let i = 1; i < points.length; i++) this.line(points[i - 1]![0], points[i - 1]![1], points[i]![0], points[i]![1], c, thickness);
  }

  /** A bar from the baseline `y0` up (or down) to `y1`. */
  bar(x: number, width: number, y0: number, y1: number, c: Rgb): void {
    this.fillRect(x, Math.min(y0, y1), width, Math.abs(y1 - y0), c);
  }

  /** Text at (x, y) top left, each font pixel `scale` pixels; unknown characters are drawn as '?'. */
  text(x: number, y: number, s: string, c: Rgb, scale = 1): void {
    [...s.toUpperCase()].forEach((ch, k) => {
      const rows = GLYPHS[ch] ?? GLYPHS['?']!;
      for (let r = 0; r < GLYPH_H; r++) {
        const bits = parseInt(rows.slice(r * 2, r * 2 + 2), 16);
        for (let col = 0; col < 5; col++) {
          if (bits & (0x10 >> col)) this.fillRect(x + (k * GLYPH_W + col) * scale, y + r * scale, scale, scale, c);
        }
      }
    });
  }

  /** Width in pixels of `s` at `scale`. */
  static textWidth(s: string, scale = 1): number {
    return s.length * GLYPH_W * scale;
  }
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** An 8-bit RGB PNG of the raster (filter 0 on every row: charts are mostly flat colour, deflate does the rest). */
export function encodePng(r: Raster): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(r.width, 0);
  ihdr.writeUInt32BE(r.height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  // compression, filter and interlace methods: 0
  const stride = r.width * 3;
  const scanlines = Buffer.alloc((stride + 1) * r.height);
  for (let y = 0; y < r.height; y++) scanlines.set(r.pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(scanlines, { level: 9 })), chunk('IEND', new Uint8Array())]);
}

export interface PngHeader { readonly width: number; readonly height: number; readonly bitDepth: number; readonly colourType: number;
  readonly chunks: readonly string[] }

/** The header of a PNG after checking its signature and every chunk's CRC; throws on anything malformed. */
export function readPngHeader(png: Uint8Array): PngHeader {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG: bad signature');
  const chunks: string[] = [];
  let header: Omit<PngHeader, 'chunks'> | undefined;
  for (let at = 8; at < buf.length;) {
    if (at + 12 > buf.length) throw new Error(`truncated chunk at byte ${at}`);
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (at + 12 + length > buf.length) throw new Error(`chunk ${type} runs past the end`);
    const expected = buf.readUInt32BE(at + 8 + length);
    const actual = crc32(buf.subarray(at + 4, at + 8 + length)) >>> 0;
    if (expected !== actual) throw new Error(`chunk ${type}: CRC ${actual.toString(16)}, recorded ${expected.toString(16)}`);
    if (type === 'IHDR') {
      header = { width: buf.readUInt32BE(at + 8), height: buf.readUInt32BE(at + 12), bitDepth: buf[at + 16]!, colourType: buf[at + 17]! };
    }
    chunks.push(type);
    at += 12 + length;
  }
  if (!header || chunks[0] !== 'IHDR') throw new Error('no IHDR first');
  if (chunks.at(-1) !== 'IEND') throw new Error('no IEND last');
  return { ...header, chunks };
}
