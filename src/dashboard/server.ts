// The run dashboard: a plain HTTP server on 127.0.0.1 serving one page and a JSON API over the
// same run records as `fanout runs` (src/aws/history.ts). The page polls the API, so a live run
// updates as its partitions finish. Read-only: it never writes to the work location.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeRun, listRuns } from '../aws/history.ts';
import { RUN_ID_PATTERN } from '../aws/run.ts';
import { DASHBOARD_PAGE } from './page.ts';

export interface Dashboard {
  url: string;
  work: string;
  close(): Promise<void>;
}

export interface DashboardOptions {
  /** The work location: s3://bucket[/prefix] or a directory with runs/. */
  work: string;
  /** @default 8787; 0 picks a free port */
  port?: number;
  /** @default 127.0.0.1 (the dashboard has no authentication: keep it on the loopback interface) */
  host?: string;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    // The page's script is inline and it talks only to this server.
    'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

async function route(req: IncomingMessage, res: ServerResponse, work: string): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (req.method !== 'GET') return send(res, 405, 'text/plain', 'read-only: GET only');
  if (url.pathname === '/' || url.pathname === '/index.html') return send(res, 200, 'text/html; charset=utf-8', DASHBOARD_PAGE);
  if (url.pathname === '/api/runs') {
    const limit = Number(url.searchParams.get('limit') ?? '100');
    return send(
      res,
      200,
      'application/json',
      JSON.stringify({ work, runs: await listRuns(work, { limit: Number.isInteger(limit) && limit > 0 ? limit : 100 }) }),
    );
  }
  const m = /^\/api\/runs\/([^/]+)$/.exec(url.pathname);
  if (m) {
    const runId = decodeURIComponent(m[1] ?? '');
    if (!RUN_ID_PATTERN.test(runId)) return send(res, 400, 'application/json', JSON.stringify({ error: `invalid run id ${JSON.stringify(runId)}` }));
    return send(res, 200, 'application/json', JSON.stringify(await describeRun(work, runId)));
  }
  send(res, 404, 'text/plain', 'not found');
}

/** Starts the dashboard; resolves once it listens. */
export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const host = opts.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    route(req, res, opts.work).catch((e: unknown) => {
      const message = e instanceof Error ? e.message : String(e);
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: message }));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`dashboard: cannot listen on ${host}:${opts.port ?? 8787} (${e.code ?? e.message})`)));
    server.listen(opts.port ?? 8787, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/`,
    work: opts.work,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
