// Points on the WGS84 sphere and great-circle distance.

export interface Point {
  readonly lat: number;
  readonly lng: number;
}

const EARTH_RADIUS_KM = 6371.0088;
const RAD = Math.PI / 180;

export function distanceKm(a: Point, b: Point): number {
  const dLat = (b.lat - a.lat) * RAD;
  const dLng = (b.lng - a.lng) * RAD;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * RAD) * Math.cos(b.lat * RAD) * Math.sin(dLng / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

export function isPoint(p: unknown): p is Point {
  const q = p as Point;
  return typeof q === 'object' && q !== null && Number.isFinite(q.lat) && Number.isFinite(q.lng)
    && q.lat >= -90 && q.lat <= 90 && q.lng >= -180 && q.lng <= 180;
}
