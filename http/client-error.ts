// Answers Node would give by itself, before any middleware runs, in the contract's shape:
// a request line and headers past the parser's limit (16 KB: a URL that long) is 431
// `headers_too_large`, a request not received in time is 408 `request_timeout`, anything
// else that is not HTTP is 400 `bad_request`. Each carries the JSON error body, an
// X-Request-Id and the headers every answer has. The rest of an oversized request is
// read and dropped before the socket closes, so the client reads the answer instead of
// a connection reset.

import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

const ANSWERS: Readonly<Record<string, readonly [number, string, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'the request line and headers are larger than the node accepts (16 KB)'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'the request was not received in time'],
  HPE_HEADERS_TIMEOUT: [408, 'request_timeout', 'the request headers were not received in time'],
};
const OTHERWISE = [400, 'bad_request', 'the request is not valid HTTP/1.1'] as const;

/** How long a refused client may go on sending before its socket is closed anyway. */
const DRAIN_MS = 5_000;

const answered = new WeakSet<Duplex>();

/** The server's `clientError` listener. */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (answered.has(socket)) return;
  answered.add(socket);
  // A response already under way on this connection cannot be followed by another one.
  const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (error.code === 'ECONNRESET' || !socket.writable || inFlight) {
    socket.destroy();
    return;
  }
  const [status, code, message] = ANSWERS[error.code ?? ''] ?? OTHERWISE;
  const body = JSON.stringify({ error: { code, message } });
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`, 'Connection: close', 'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`, `X-Request-Id: ${randomUUID()}`,
    'X-Content-Type-Options: nosniff', 'X-Frame-Options: DENY', 'Referrer-Policy: no-referrer',
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'",
  ];
  socket.on('data', () => undefined);
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), DRAIN_MS).unref();
}
