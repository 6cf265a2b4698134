// The AsyncAPI 3.0 document of the WebSocket protocol, generated from the zod
// schemas in ws-messages.ts that the gateway validates with: one channel
// (/v1/ws), a receive operation per client message (answered by ack or error)
// and a send operation per server message. Payloads are zod's JSON Schemas
// (draft-07, the base of AsyncAPI's schema format); named schemas go to
// components.schemas.

import { z, type ZodType } from 'zod';
import { CLIENT_ROLES, ClientMessage, SERVER_AUDIENCE, ServerMessage } from './ws-messages.ts';

type Json = Record<string, unknown>;

/** A message's key in the document: its type in camelCase (keys may not hold dots). */
export function messageKey(type: string): string {
  return type.replace(/[._-]+(.)/g, (_, c: string) => c.toUpperCase());
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

const DESCRIPTION = `Drivers, riders and admins hold one WebSocket at \`/v1/ws\`. Every frame is a JSON text
message with a \`type\`.

**Authentication.** Send \`{ "type": "auth", "token": "<JWT>" }\` as the first message. A socket
not authenticated within 10 s is closed with 4401; a bad token in \`auth\` closes it with 4401. A
token in the URL (\`?token=<JWT>\`, which proxy and access logs record) closes the socket with 4401
at once, unless the node runs with WS_QUERY_TOKEN=true; there a bad \`?token=\` refuses the upgrade
with HTTP 401. The session acts as the token's subject: a driver's socket drives that driver's actor only.

**Acknowledgements.** Every client message may carry a \`ref\` (string of at most 64 characters, or
a number). It is answered with \`{ "type": "ack", "ref" }\` (\`ref\` null when none was given) or
\`{ "type": "error", "code", "message", "ref"? }\`. Errors leave the socket open.

**Limits.** 20 messages a second per socket with bursts of 40 (then \`error\` \`rate_limited\`);
frames up to 256 KiB (larger ones close the socket with 1009). The server pings every 30 s and
terminates a socket that missed the previous ping. A reader that falls behind loses
\`driver.location\` pushes first and is closed with 1013 once far behind. On shutdown sockets are
closed with 1001: reconnect (with backoff) to another node.`;

export interface AsyncApiOptions {
  /** host[:port] clients connect to, as the request that asked for the document saw it. */
  readonly host: string;
  readonly secure: boolean;
}

let cached: { components: Json; channel: Json; operations: Json } | undefined;

/** The document, with the server the client reached it through. */
export function asyncApiDocument(options: AsyncApiOptions): Json {
  cached ??= build();
  return {
    asyncapi: '3.0.0',
    info: { title: 'dispatch-actors WebSocket API', version: '1', description: DESCRIPTION },
    defaultContentType: 'application/json',
    servers: {
      current: {
        host: options.host,
        protocol: options.secure ? 'wss' : 'ws',
        description: 'The node that served this document; every node serves the same protocol.',
        security: [{ $ref: '#/components/securitySchemes/firstMessage' }, { $ref: '#/components/securitySchemes/queryToken' }],
      },
    },
    channels: { ws: cached.channel },
    operations: cached.operations,
    components: cached.components,
  };
}

function build() {
  const schemas: Json = {};
  /** Every option of the union carries an id, so each lands in components.schemas. */
  const collect = (union: ZodType, io: 'input' | 'output') => {
    const json = z.toJSONSchema(union, { target: 'draft-7', io, unrepresentable: 'any' }) as Json;
    const relinked = JSON.parse(JSON.stringify(json.definitions ?? {}).replaceAll('"#/definitions/', '"#/components/schemas/')) as Json;
    for (const [name, schema] of Object.entries(relinked)) schemas[name] ??= schema;
  };
  // The client side as the gateway accepts it; the server side in zod's input
  // view, whose objects stay open: the contract lets the server add fields.
  collect(ClientMessage, 'input');
  collect(ServerMessage, 'input');

  const messages: Json = {};
  const channelMessages: Json = {};
  const operations: Json = {};
  const channel = { $ref: '#/channels/ws' };
  const ref = (key: string) => ({ $ref: `#/channels/ws/messages/${key}` });
  const add = (option: ZodType & { shape: { type: { value: string } } }, side: 'client' | 'server', roles: readonly string[]) => {
    const type = option.shape.type.value;
    const key = messageKey(type);
    if (messages[key]) throw new Error(`two WebSocket messages named ${key}`);
    const meta = z.globalRegistry.get(option) as { id?: string; description?: string; examples?: unknown[] } | undefined;
    if (!meta?.id || !schemas[meta.id]) throw new Error(`WebSocket message ${type} has no schema id`);
    messages[key] = {
      name: type,
      title: type,
      summary: `${side === 'client' ? 'Sent by' : 'Sent to'} ${roles.join(', ')}.`,
      description: meta.description,
      contentType: 'application/json',
      payload: { $ref: `#/components/schemas/${meta.id}` },
      examples: (meta.examples ?? []).map((payload, i) => ({ name: `${key}${i + 1}`, payload })),
      tags: roles.map((name) => ({ name })),
    };
    channelMessages[key] = { $ref: `#/components/messages/${key}` };
    return key;
  };

  for (const option of ServerMessage.options) {
    const key = add(option, 'server', SERVER_AUDIENCE[option.shape.type.value]);
    operations[`send${capital(key)}`] = {
      action: 'send',
      channel,
      title: `Server sends ${option.shape.type.value}`,
      messages: [ref(key)],
    };
  }
  for (const option of ClientMessage.options) {
    const type = option.shape.type.value;
    const key = add(option, 'client', CLIENT_ROLES[type]);
    const replies = ['ack', 'error', ...(type === 'subscribe' ? ['booking.updated'] : type === 'ops.subscribe' ? ['ops.snapshot'] : [])];
    operations[`receive${capital(key)}`] = {
      action: 'receive',
      channel,
      title: `Client sends ${type}`,
      messages: [ref(key)],
      reply: { channel, messages: replies.map((t) => ref(messageKey(t))) },
    };
  }

  return {
    channel: {
      address: '/v1/ws',
      title: 'Dispatch sessions',
      description: 'One socket per app session. Client messages are answered on the same socket; notifications for the session\'s user ' +
        'are pushed as they happen, from whichever node produced them.',
      messages: channelMessages,
      bindings: {
        ws: {
          method: 'GET',
          query: {
            type: 'object',
            properties: {
              token: { type: 'string', description: 'A JWT. Prefer the first-message `auth`: query strings land in proxy logs.' },
            },
          },
          bindingVersion: '0.1.0',
        },
      },
    },
    operations,
    components: {
      schemas,
      messages,
      securitySchemes: {
        firstMessage: {
          type: 'http', scheme: 'bearer', bearerFormat: 'JWT',
          description: 'Send `{ "type": "auth", "token": "<JWT>" }` as the first message, within 10 s of opening the socket.',
        },
        queryToken: {
          type: 'httpApiKey', name: 'token', in: 'query',
          description: 'Only on nodes with WS_QUERY_TOKEN=true (elsewhere the socket is closed with 4401): the same JWT as `?token=` on ' +
            'the upgrade request, refused with HTTP 401 when invalid. Query strings end up in proxy and access logs.',
        },
      },
    },
  };
}
