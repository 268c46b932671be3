/**
 * The bench process's side of the children it forks (the server under test and the baseline): a
 * typed request/response protocol over the IPC channel of `child_process.fork`.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/** What a child reports about itself on request. */
export interface ChildStats {
  /** `process.memoryUsage()` of the child, in bytes. */
  rss: number;
  heapUsed: number;
  /** Event-loop delay since the last `eld-reset` (perf_hooks.monitorEventLoopDelay, 1 ms resolution), in ms. */
  eldMaxMs: number;
  eldP99Ms: number;
  eldMeanMs: number;
  /** Longest garbage-collection pause since the last `eld-reset` (PerformanceObserver 'gc'), in ms. */
  gcMaxMs: number;
  /** CPU time of the whole process (all threads) since it started, µs. */
  cpuUs: number;
  /** The child's monotonic clock (process.hrtime), µs: the time base of its CPU profile samples. */
  monotonicUs: number;
}

/** Messages a parent sends. `id` pairs each request with its reply. */
export type ParentMessage =
  | { id: number; type: 'stats' }
  | { id: number; type: 'eld-reset' }
  | { id: number; type: 'gc' }
  | { id: number; type: 'stop' }
  | { id: number; type: 'init'; payload: unknown };

/** Messages a child sends: `ready` once (with its URL), then one reply per request. */
export type ChildMessage =
  | { type: 'ready'; url: string }
  | { type: 'failed'; error: string }
  | { type: 'reply'; id: number; stats?: ChildStats; error?: string };

/** A forked child speaking {@link ParentMessage} / {@link ChildMessage}. */
export class Child {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (message: ChildMessage & { type: 'reply' }) => void; reject: (error: Error) => void }>();
  private exited = false;
  readonly exit: Promise<number | null>;
  readonly url: Promise<string>;

  private constructor(
    readonly name: string,
    private readonly process: ChildProcess,
  ) {
    this.exit = new Promise((resolve) => {
      process.once('exit', (code, signal) => {
        this.exited = true;
        for (const { reject } of this.pending.values()) reject(new Error(`${name} exited (code ${code}, signal ${signal})`));
        this.pending.clear();
        resolve(code);
      });
    });
    this.url = new Promise((resolve, reject) => {
      process.on('message', (raw) => {
        const message = raw as ChildMessage;
        if (message.type === 'ready') resolve(message.url);
        else if (message.type === 'failed') reject(new Error(`${name} failed to start: ${message.error}`));
        else if (message.type === 'reply') {
          const waiter = this.pending.get(message.id);
          this.pending.delete(message.id);
          if (!waiter) return;
          if (message.error) waiter.reject(new Error(`${name}: ${message.error}`));
          else waiter.resolve(message);
        }
      });
      void this.exit.then((code) => reject(new Error(`${name} exited with code ${code} before it was ready (log: see above)`)));
    });
    // Attach a no-op handler so an early rejection before anyone awaits `url` is not "unhandled".
    this.url.catch(() => {});
  }

  /**
   * Forks `modulePath` with `env` (replacing the environment) and `execArgv`; its stdout and stderr
   * go to `logFile`, so a failure can be shown without the child's JSON logs cluttering the table.
   */
  static start(name: string, modulePath: string, options: { env: NodeJS.ProcessEnv; execArgv?: string[]; logFile: string }): Child {
    const log = createWriteStream(options.logFile, { flags: 'a' });
    const child = fork(modulePath, [], {
      env: options.env,
      execArgv: options.execArgv ?? [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once('exit', () => setTimeout(() => log.end(), 50));
    return new Child(name, child);
  }

  private request(message: ParentMessage extends infer M ? (M extends ParentMessage ? Omit<M, 'id'> : never) : never): Promise<ChildMessage & { type: 'reply' }> {
    if (this.exited) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.process.send({ ...message, id } as ParentMessage);
    });
  }

  async stats(): Promise<ChildStats> {
    const reply = await this.request({ type: 'stats' });
    if (!reply.stats) throw new Error(`${this.name} sent no stats`);
    return reply.stats;
  }

  async resetEventLoopDelay(): Promise<void> {
    await this.request({ type: 'eld-reset' });
  }

  /** Runs full garbage collections in the child (which must run with --expose-gc). */
  async collectGarbage(): Promise<void> {
    await this.request({ type: 'gc' });
  }

  async init(payload: unknown): Promise<void> {
    await this.request({ type: 'init', payload });
  }

  /** Asks the child to shut down cleanly (so `--cpu-prof` writes its profile); kills it after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.exited) return;
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    try {
      await this.request({ type: 'stop' }).catch(() => {});
      await this.exit;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (!this.exited) this.process.kill('SIGKILL');
  }
}

/**
 * The child's side: answers `stats` / `eld-reset` / `stop` (and `init` through `onInit`) over IPC.
 * `onStop` must release everything; the process exits with code 0 after it.
 */
export function serveParent(
  handlers: { onStop: () => Promise<void>; onInit?: (payload: unknown) => Promise<void> },
  monitor: EventLoopMonitor,
): void {
  const stats = (): ChildStats => {
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      ...monitor.read(),
      cpuUs: cpu.user + cpu.system,
      monotonicUs: Number(process.hrtime.bigint() / 1000n),
    };
  };
  const send = (message: ChildMessage) => process.send?.(message);
  process.on('message', (raw) => {
    const message = raw as ParentMessage;
    const reply = (extra: { stats?: ChildStats; error?: string } = {}) => send({ type: 'reply', id: message.id, ...extra });
    switch (message.type) {
      case 'stats':
        reply({ stats: stats() });
        break;
      case 'eld-reset':
        monitor.reset();
        reply();
        break;
      case 'gc': {
        // Needs --expose-gc; two full collections a moment apart also run finalizers in between.
        const gc = (globalThis as { gc?: () => void }).gc;
        gc?.();
        setTimeout(() => {
          gc?.();
          reply(gc ? {} : { error: 'started without --expose-gc' });
        }, 100);
        break;
      }
      case 'init':
        (handlers.onInit ?? (async () => {}))(message.payload).then(
          () => reply(),
          (error: unknown) => reply({ error: String(error instanceof Error ? error.stack : error) }),
        );
        break;
      case 'stop':
        handlers.onStop().then(
          () => {
            reply();
            // Give the IPC reply a moment to leave, then exit normally (writes --cpu-prof output).
            setTimeout(() => process.exit(0), 20);
          },
          (error: unknown) => {
            reply({ error: String(error) });
            setTimeout(() => process.exit(1), 20);
          },
        );
        break;
    }
  });
  // The parent going away (crash, Ctrl-C) must not leave a server behind.
  process.on('disconnect', () => {
    void handlers.onStop().finally(() => process.exit(0));
  });
}

export interface EventLoopMonitor {
  read(): Pick<ChildStats, 'eldMaxMs' | 'eldP99Ms' | 'eldMeanMs' | 'gcMaxMs'>;
  reset(): void;
}

/** Event-loop delay monitor shared by both children: 1 ms resolution, so a 20 ms stall is visible. */
export async function eventLoopMonitor(): Promise<EventLoopMonitor> {
  const { monitorEventLoopDelay, PerformanceObserver } = await import('node:perf_hooks');
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  // GC pauses, to tell a collection from other causes of a stall.
  let gcMaxMs = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMaxMs = Math.max(gcMaxMs, entry.duration);
  }).observe({ entryTypes: ['gc'] });
  return {
    read: () => ({
      eldMaxMs: histogram.max / 1e6,
      eldP99Ms: histogram.percentile(99) / 1e6,
      eldMeanMs: histogram.mean / 1e6,
      gcMaxMs,
    }),
    reset: () => {
      histogram.reset();
      gcMaxMs = 0;
    },
  };
}
