// A local OTLP/HTTP receiver (JSON, what @opentelemetry/exporter-*-otlp-http sends) on 127.0.0.1,
// and flatteners for what it received: spans with their attributes, metric data points.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

type AnyValue = { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean; arrayValue?: { values?: AnyValue[] } };
type KeyValue = { key: string; value: AnyValue };

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  service: string;
  attrs: Record<string, unknown>;
  status: { code?: number; message?: string };
  startMs: number;
  endMs: number;
}

export interface ReceivedPoint {
  name: string;
  attrs: Record<string, unknown>;
  value: number;
}

function value(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return null;
}

function attrs(kvs: KeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, value(kv.value)]));
}

const nanosToMs = (n: string | number): number => Number(BigInt(n) / 1000n) / 1000;

export class OtlpReceiver {
  readonly bodies: { path: string; body: unknown }[] = [];
  private constructor(private readonly server: Server) {}

  static async start(): Promise<OtlpReceiver> {
    const server = createServer();
    const r = new OtlpReceiver(server);
    server.on('request', (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (!String(req.headers['content-type']).includes('json')) throw new Error(`OTLP receiver: expected JSON, got ${req.headers['content-type']}`);
        r.bodies.push({ path: req.url ?? '', body: JSON.parse(text) });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    return r;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  spans(): ReceivedSpan[] {
    const out: ReceivedSpan[] = [];
    for (const { path, body } of this.bodies) {
      if (path !== '/v1/traces') continue;
      for (const rs of (body as { resourceSpans: { resource: { attributes: KeyValue[] }; scopeSpans: { spans: Record<string, unknown>[] }[] }[] })
        .resourceSpans) {
        const service = String(attrs(rs.resource.attributes)['service.name']);
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            out.push({
              traceId: String(s['traceId']),
              spanId: String(s['spanId']),
              parentSpanId: String(s['parentSpanId'] ?? ''),
              name: String(s['name']),
              service,
              attrs: attrs(s['attributes'] as KeyValue[]),
              status: (s['status'] ?? {}) as ReceivedSpan['status'],
              startMs: nanosToMs(s['startTimeUnixNano'] as string),
              endMs: nanosToMs(s['endTimeUnixNano'] as string),
            });
      }
    }
    return out;
  }

  /** Sum/histogram data points by metric name (histograms give their sum). */
  points(): ReceivedPoint[] {
    const out: ReceivedPoint[] = [];
    for (const { path, body } of this.bodies) {
      if (path !== '/v1/metrics') continue;
      for (const rm of (body as { resourceMetrics: { scopeMetrics: { metrics: Record<string, unknown>[] }[] }[] }).resourceMetrics)
        for (const sm of rm.scopeMetrics)
          for (const m of sm.metrics) {
            const data = (m['sum'] ?? m['histogram'] ?? m['gauge']) as { dataPoints: Record<string, unknown>[] } | undefined;
            for (const p of data?.dataPoints ?? [])
              out.push({ name: String(m['name']), attrs: attrs(p['attributes'] as KeyValue[]), value: Number(p['asInt'] ?? p['asDouble'] ?? p['sum'] ?? 0) });
          }
    }
    return out;
  }

  stop(): Promise<void> {
    return new Promise((ok) => this.server.close(() => ok()));
  }
}
