// Traces across nodes, on the OpenTelemetry API alone. A trace starts at the edge (an HTTP
// request, a WebSocket command), always as a new root whatever the client sent, and follows the command through the log: the context
// travels in the command envelope as a W3C traceparent (`CommandEnvelope.trace`), so the
// node that handles it, on whichever node it lives, continues the same trace, and so do
// the tells, service requests and notifications that handling causes.
//
// Off by default and free when off: until adapters/otel/tracing.ts registers a provider,
// `enabled` is false and every helper here returns at once, before allocating a span or
// formatting a traceparent; envelopes then carry no `trace` field at all.

import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';

export { SpanKind };
export type { Span };

let enabled = false;

/** Whether spans are recorded (a provider is registered). Hot paths check it first. */
export function tracingEnabled(): boolean {
  return enabled;
}

/** Set by the SDK's start and shutdown (adapters/otel/tracing.ts), nowhere else. */
export function setTracingEnabled(on: boolean): void {
  enabled = on;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The W3C traceparent naming a span, for an envelope or a wire message. */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 1) === 1 ? '01' : '00'}`;
}

/**
 * The context a traceparent names, as a remote parent; the root context for anything
 * else (absent, malformed or all-zero: a client's header is not trusted to be well formed).
 */
export function contextOf(traceparent: string | undefined): Context {
  const m = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & 1, isRemote: true });
}

/** The parent a span continues: the traceparent given, else the span active here (an edge request's). */
function parentOf(traceparent: string | undefined): Context | undefined {
  if (traceparent !== undefined) return contextOf(traceparent);
  return trace.getActiveSpan() ? context.active() : undefined;
}

/**
 * Starts a span continuing `traceparent` (or the active span). Undefined when tracing is
 * off or there is no trace to continue: work no request started (timers, presence, the
 * scheduler's sweep) makes no traces of its own, so only requests are traced end to end.
 */
export function startSpan(name: string, kind: SpanKind, attributes: Attributes, traceparent?: string): Span | undefined {
  if (!enabled) return undefined;
  const parent = parentOf(traceparent);
  if (!parent) return undefined;
  return trace.getTracer('dispatch').startSpan(name, { kind, attributes }, parent);
}

/**
 * Starts a new trace: a request at the public edge. A client's traceparent is never its
 * parent: continuing it would let any caller pick the trace id and, with its sampled flag,
 * have spans recorded past the sampling ratio. It is at most a link on the new root, so an
 * operator can still join the client's trace to ours; the sampler decides at the root.
 */
export function startRootSpan(name: string, kind: SpanKind, attributes: Attributes, clientTraceparent?: string): Span | undefined {
  if (!enabled) return undefined;
  const linked = clientTraceparent === undefined ? undefined : trace.getSpanContext(contextOf(clientTraceparent));
  return trace.getTracer('dispatch').startSpan(name, { kind, attributes, root: true, ...(linked ? { links: [{ context: linked }] } : {}) },
    ROOT_CONTEXT);
}

/** Runs `fn` with `span` active (so asks and tells inside continue it); just runs it without one. */
export function withSpan<T>(span: Span | undefined, fn: () => T): T {
  return span ? context.with(trace.setSpan(context.active(), span), fn) : fn();
}

/** Ends a span, marked as an error when the work failed. */
export function endSpan(span: Span | undefined, error?: unknown): void {
  if (!span) return;
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end();
}

/** Ends `span` when `work` settles; returns `work` unchanged. */
export function endWith<T>(span: Span | undefined, work: Promise<T>): Promise<T> {
  if (!span) return work;
  return work.then((v) => { endSpan(span); return v; }, (e: unknown) => { endSpan(span, e); throw e; });
}

/** `{ trace }` for an envelope or a wire message when there is a span; `{}` otherwise, so nothing grows when off. */
export function traceField(span: Span | undefined): { trace?: string } {
  return span ? { trace: traceparentOf(span) } : {};
}
