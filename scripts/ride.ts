// `npm run ride`: one side of the README's ride over the WebSocket, for a person typing it.
//
//   npm run -s ride -- driver <token> [lat lng]   the driver's app: auth, online (economy) and a position,
//                                                 then it accepts the first offer at once and drives the
//                                                 trip: trip.arrived, trip.start, trip.complete, offline
//   npm run -s ride -- rider <token> <bookingId>  the rider's app: follows the booking until it ends
//
// Every frame sent is printed after "<side> > ", every frame received after "<side> < "
// (tokens cut short). The node is $API (http://localhost:8000 by default). A socket must
// authenticate with its first message within 10 s of opening (WS_AUTH_TIMEOUT_MS) and a
// driver answer an offer within 15 s (OFFER_TIMEOUT_MS): a person pasting into `npx wscat`
// races both, this client does neither. RIDE_STEP_MS (2000) is the time between trip steps;
// RIDE_TIMEOUT_S (600) how long it waits for its part to be over. Exit status 0 when it is,
// 1 on a refusal or when the time is up, 2 on a usage error.

import { WebSocket } from 'ws';

const [side, token, ...rest] = process.argv.slice(2);
const API = (process.env.API ?? 'http://localhost:8000').replace(/\/$/, '');
const STEP_MS = Number(process.env.RIDE_STEP_MS ?? 2_000);
const TIMEOUT_S = Number(process.env.RIDE_TIMEOUT_S ?? 600);
const FINAL = new Set(['completed', 'cancelled', 'no_driver']);

interface Frame { type: string; ref?: string; code?: string; message?: string; bookingId?: string; booking?: { id: string; status: string } }

if (!token || (side !== 'driver' && side !== 'rider') || (side === 'rider' && !rest[0])) {
  console.error('usage: npm run -s ride -- driver <token> [lat lng]\n       npm run -s ride -- rider <token> <bookingId>');
  process.exit(2);
}

/** A token is a secret, and long: shown as the README writes it. */
const shown = (text: string) => text.replace(/"eyJ[\w.-]*"/g, '"eyJ…"');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fail = (why: string): never => { console.error(`${side}: ${why}`); process.exit(1); };
setTimeout(() => fail(`not over after ${TIMEOUT_S} s (RIDE_TIMEOUT_S)`), TIMEOUT_S * 1000).unref();

const socket = new WebSocket(`${API.replace(/^http/, 'ws')}/v1/ws`);
const replies = new Map<string, (frame: Frame) => void>();
const pushes: Frame[] = [];
let pushed = () => undefined as void;

socket.on('message', (data) => {
  const text = data.toString();
  console.log(`${side} < ${shown(text)}`);
  const frame = JSON.parse(text) as Frame;
  const waiter = frame.ref !== undefined ? replies.get(frame.ref) : undefined;
  if (waiter && (frame.type === 'ack' || frame.type === 'error')) {
    replies.delete(frame.ref!);
    waiter(frame);
  } else {
    pushes.push(frame);
    pushed();
  }
});
socket.on('close', (code, reason) => fail(`the socket closed (${code} ${reason.toString()})`));
socket.on('error', (error) => fail(`${error.message} (is a node answering at ${API}?)`));

/** Sends a message and waits for its ack; an error reply ends the ride. */
async function send(message: Record<string, unknown>, ref: string): Promise<void> {
  const text = JSON.stringify({ ...message, ref });
  console.log(`${side} > ${shown(text)}`);
  const reply = await new Promise<Frame>((resolve) => { replies.set(ref, resolve); socket.send(text); });
  if (reply.type === 'error') fail(`${String(message.type)} refused: ${reply.code} ${reply.message}`);
}

/** The first push (received or to come) that matches. */
async function next(match: (frame: Frame) => boolean): Promise<Frame> {
  for (;;) {
    const found = pushes.find(match);
    if (found) return found;
    await new Promise<void>((resolve) => { pushed = resolve; });
  }
}

async function driver(lat: number, lng: number): Promise<void> {
  await send({ type: 'online', vehicleType: 'economy' }, '1');
  await send({ type: 'location', lat, lng, at: new Date().toISOString() }, '2');
  const offer = await next((f) => f.type === 'offer');
  const bookingId = offer.bookingId!;
  await send({ type: 'offer.accept', bookingId }, 'acc');
  for (const [type, ref] of [['trip.arrived', 'arr'], ['trip.start', 'start'], ['trip.complete', 'done']] as const) {
    await sleep(STEP_MS); // driving
    await send({ type, bookingId }, ref);
  }
  await send({ type: 'offline' }, 'off');
}

async function rider(bookingId: string): Promise<void> {
  await send({ type: 'subscribe', bookingId }, 's');
  await next((f) => f.type === 'booking.updated' && f.booking?.id === bookingId && FINAL.has(f.booking.status));
}

await new Promise<void>((resolve) => socket.once('open', () => resolve()));
await send({ type: 'auth', token }, 'a');
if (side === 'driver') await driver(Number(rest[0] ?? 52.521), Number(rest[1] ?? 13.405));
else await rider(rest[0]!);
socket.removeAllListeners('close');
socket.close(1000);
