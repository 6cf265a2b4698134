// Which address a request comes from. X-Forwarded-For is written by whoever sends
// the request, so it is believed only as far as TRUST_PROXY says: for the given
// number of proxy hops in front of the node, or while each hop, starting with the
// socket's peer, is one of the listed proxy addresses. Off by default: the peer
// address is the client. Login throttling and rate limits key on this address.

import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';
import { trustedProxies, type TrustProxy } from '../config/index.ts';

export interface ClientAddress {
  readonly ip: string;
  /** The client reached the first trusted hop (or the node) over TLS. */
  readonly secure: boolean;
}

const plain = (ip: string) => ip.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');

export function clientAddressOf(trust: TrustProxy): (req: IncomingMessage) => ClientAddress {
  const listed = trust.kind === 'addresses' ? trustedProxies(trust.addresses) : undefined;
  const isProxy = (ip: string, hop: number) => trust.kind === 'hops' ? hop < trust.hops
    : listed !== undefined && listed.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
  return (req) => {
    const peer = plain(req.socket.remoteAddress ?? '');
    const tls = Boolean((req.socket as { encrypted?: boolean }).encrypted);
    if (trust.kind === 'off') return { ip: peer, secure: tls };
    const chain = String(req.headers['x-forwarded-for'] ?? '').split(',').map((s) => plain(s.trim())).filter(Boolean);
    // Walk from the node outwards: the peer, then X-Forwarded-For right to left.
    let ip = peer;
    let hop = 0;
    while (isProxy(ip, hop) && chain.length > 0) {
      ip = chain.pop()!;
      hop++;
    }
    // The scheme the client used is the trusted proxy's to tell (the nearest one's word).
    const proto = String(req.headers['x-forwarded-proto'] ?? '').split(',').at(-1)?.trim();
    return { ip, secure: isProxy(peer, 0) && proto ? proto === 'https' : tls };
  };
}

/** Sets `ctx.ip` (what the rate limits read) and `ctx.state.secure`. */
export function clientAddress(of: (req: IncomingMessage) => ClientAddress): Middleware {
  return (ctx, next) => {
    const address = of(ctx.req);
    ctx.request.ip = address.ip;
    ctx.state.secure = address.secure;
    return next();
  };
}
