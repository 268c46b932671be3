import { performance } from 'node:perf_hooks';

/**
 * The schedule of a background worker: runs `round` when woken and every `pollIntervalMs`
 * otherwise, never two rounds at once (a wake during a round runs another right after it). The mail
 * outbox, the webhook dispatcher and maintenance share it; a round that throws is reported to
 * `onError` and the next one comes at the usual interval.
 */
export class PollingWorker {
  private timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now()), while there is one. */
  private dueAt = Infinity;
  private running: Promise<void> | undefined;
  private rerun = false;
  private stopped = true;

  constructor(
    private readonly round: () => Promise<void>,
    private readonly pollIntervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** True once {@link stop} was called (or before {@link start}): a round in progress should wind up. */
  get stopping(): boolean {
    return this.stopped;
  }

  /** Runs the first round after `firstDelayMs` (at once by default), then one every interval. */
  start(firstDelayMs = 0): void {
    this.stopped = false;
    this.schedule(firstDelayMs);
  }

  /** Runs a round now (or right after the one in progress). */
  wake(): void {
    this.schedule(0);
  }

  /** No round starts after this; resolves when the one in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /**
   * Runs a round in `delay` ms, unless one is due sooner already: a wake whose timer has not fired
   * yet when a round ends must not give way to the next regular poll (the round's end schedules
   * that one), or what woke it would wait a whole interval.
   */
  private schedule(delay: number): void {
    if (this.stopped) return;
    const dueAt = performance.now() + delay;
    if (this.timer && this.dueAt <= dueAt) return;
    clearTimeout(this.timer);
    this.dueAt = dueAt;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dueAt = Infinity;
      this.tick();
    }, delay);
    this.timer.unref();
  }

  private tick(): void {
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = this.round()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
        const again = this.rerun;
        this.rerun = false;
        this.schedule(again ? 0 : this.pollIntervalMs);
      });
  }
}
