// Starts the OpenTelemetry SDK when OTEL_* configure an exporter (config/index.ts): spans
// are batched and posted over OTLP/HTTP (JSON), under service.name (OTEL_SERVICE_NAME,
// `dispatch`) and the node id. Everything else speaks only @opentelemetry/api
// (runtime/tracing.ts), which records nothing until this has run.

import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type Sampler } from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../../config/index.ts';
import { setTracingEnabled } from '../../runtime/tracing.ts';
import type { NodeId } from '../../runtime/entity.ts';

export interface Tracing {
  /** Sends the spans still queued and stops; tracing is off again after it. */
  shutdown(): Promise<void>;
}

/**
 * The ratio decides at the root: every request at the public edge starts a new trace (no
 * client traceparent is continued, runtime/tracing.ts startRootSpan), so OTEL_TRACES_SAMPLER_ARG
 * holds whatever clients send. Inside the cluster a span follows its parent's decision,
 * carried in the command envelope, so no trace loses its middle.
 */
export function samplerFor(ratio: number): Sampler {
  return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
}

/** The API's globals are per process: one node per process traces (a second start is refused). */
let running = false;

export function startTracing(config: TracingConfig, nodeId: NodeId): Tracing {
  if (running) throw new Error('tracing is already started in this process');
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: config.serviceName,
      [ATTR_SERVICE_VERSION]: process.env.npm_package_version ?? '0.1.0',
      // service.instance.id, as the semantic conventions name a service's instance.
      'service.instance.id': nodeId,
    }),
    sampler: samplerFor(config.ratio),
    spanProcessors: [new BatchSpanProcessor({
      exporter: new OTLPTraceExporter({ url: config.url, headers: { ...config.headers } }),
      // A trace shows within a second or two; batches stay large under load (512 spans).
      scheduledDelayMillis: 1_000,
    })],
  });
  // Async-local context: a span started by an HTTP request stays active across its awaits.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  running = true;
  setTracingEnabled(true);
  return {
    async shutdown() {
      setTracingEnabled(false);
      try {
        await provider.shutdown();
      } finally {
        trace.disable();
        context.disable();
        propagation.disable();
        running = false;
      }
    },
  };
}
