// Points on the WGS84 sphere and great-circle distance.

export interface Point {
  readonly lat: number;
  readonly lng: number;
}

const EARTH_RADIUS_KM = 6371.0088;
const RAD = Math.PI / 180;

export function distanceKm(a: Point, b: Point): number {
  return haversineKm(a.lat, a.lng, cosLat(a.lat), b.lat, b.lng, cosLat(b.lat));
}

/** The cosine of a latitude in degrees, as distanceKm uses it (searches keep it beside a position). */
export function cosLat(lat: number): number {
  return Math.cos(lat * RAD);
}

/**
 * distanceKm with both latitudes' cosines given (cosLat): the same operations in the same
 * order, so the very same number, for a search that measures one point against many.
 */
export function haversineKm(aLat: number, aLng: number, aCos: number, bLat: number, bLng: number, bCos: number): number {
  const dLat = (bLat - aLat) * RAD;
  const dLng = (bLng - aLng) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + aCos * bCos * Math.sin(dLng / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

export function isPoint(p: unknown): p is Point {
  const q = p as Point;
  return typeof q === 'object' && q !== null && Number.isFinite(q.lat) && Number.isFinite(q.lng)
    && q.lat >= -90 && q.lat <= 90 && q.lng >= -180 && q.lng <= 180;
}
