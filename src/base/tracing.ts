/**
 * Whether this process records traces. `src/node/tracing.ts` turns it on when the standard
 * `OTEL_*` variables ask for it (off by default). Every layer that creates spans reads this
 * flag before it touches `@opentelemetry/api`, so that with tracing off the hot paths (proposals,
 * the host cycle, message batches, requests) allocate no span, context or carrier: the cost of
 * tracing when off is one property read per place.
 *
 * Spans are only made inside a traced request (a sampled span is active, started at a door):
 * background work (placement rounds, heartbeats, repair) makes none.
 */
export const tracing: { on: boolean } = { on: false };

export function setTracing(on: boolean): void {
  tracing.on = on;
}
