/**
 * autocannon runs against one GraphQL endpoint, reduced to what the report needs. The load
 * generator runs in the bench process, so its own CPU use is measured alongside.
 */
import autocannon from 'autocannon';

/** One load run's outcome. */
export interface LoadResult {
  title: string;
  connections: number;
  /** Seconds the run took. */
  durationS: number;
  /** Answers that counted as successes (2xx, and the body check when there is one). */
  ok: number;
  /** `ok` per second. */
  rps: number;
  /** Latency percentiles of 2xx answers, ms (autocannon's resolution is 1 ms). */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Failures: non-2xx statuses, socket errors and timeouts, and answers failing the body check. */
  failed: number;
  /** CPU the load generator (this process) used during the run, in cores (1.0 = one core busy). */
  loadgenCores: number;
}

/** What to send: one fixed body, or one body per request from `nextBody`. */
export interface LoadSpec {
  title: string;
  url: string;
  connections: number;
  /** Seconds; ignored when `amount` is set. */
  duration?: number;
  /** Total requests; the run is cut off after `maxSeconds` if it takes longer. */
  amount?: number;
  maxSeconds?: number;
  token?: string;
  body?: string;
  nextBody?: () => string;
  /** When given, a 2xx answer only counts as a success if its body passes this check. */
  check?: (body: string) => boolean;
}

/** Runs one autocannon load and waits for it to finish. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (spec.token) headers.authorization = `Bearer ${spec.token}`;
  let badBodies = 0;
  const request: autocannon.Request = { method: 'POST', path: new URL(spec.url).pathname, headers, body: spec.body };
  if (spec.nextBody) {
    const next = spec.nextBody;
    request.setupRequest = (req) => ({ ...req, body: next() });
  }
  if (spec.check) {
    const check = spec.check;
    request.onResponse = (status, body) => {
      if (status >= 200 && status < 300 && !check(body)) badBodies++;
    };
  }
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  // Without a callback autocannon returns its instance, which is also a promise of the result.
  const instance = autocannon({
    url: spec.url,
    connections: spec.connections,
    ...(spec.amount ? { amount: spec.amount } : { duration: spec.duration ?? 10 }),
    requests: [request],
    timeout: 10,
  }) as unknown as autocannon.Instance & Promise<autocannon.Result>;
  let cutOff: NodeJS.Timeout | undefined;
  if (spec.amount && spec.maxSeconds) cutOff = setTimeout(() => instance.stop(), spec.maxSeconds * 1000);
  const result = await instance;
  clearTimeout(cutOff);
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMs = performance.now() - started;
  const ok = result['2xx'] - badBodies;
  return {
    title: spec.title,
    connections: spec.connections,
    durationS: result.duration,
    ok,
    rps: ok / result.duration,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    failed: result.non2xx + result.errors + badBodies + result.mismatches,
    loadgenCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
  };
}
