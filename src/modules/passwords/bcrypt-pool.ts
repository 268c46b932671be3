import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';

/**
 * bcrypt in a pool of worker threads, one per core (piscina), at low priority. bcryptjs's own async
 * API still runs on the main thread in chunks, so a burst of sign-ins would stall every other
 * request; here the event loop only posts messages.
 */
export class BcryptPool {
  private readonly pool = new Piscina({
    filename: new URL('./bcrypt.worker.mjs', import.meta.url).href,
    minThreads: 1,
    maxThreads: availableParallelism(),
    // Idle workers exit after a minute; the first hash after that pays a worker start-up.
    idleTimeout: 60_000,
    // The hashing threads run at the lowest CPU priority (nice 19, through piscina's optional
    // @napi-rs/nice; ignored where it is missing). While both cores hash a login storm, the event
    // loop and V8's garbage-collection helpers still get a core at once: in `npm run bench`, me
    // during the flood went from about 900 to 1,600 req/s and the longest collection pause from
    // 10-20 ms to 6-9 ms. Logins alone run as fast as before; mixed with busy other traffic they
    // get what the rest of the server leaves (see BENCHMARKS.md).
    niceIncrement: 19,
  });

  hash(value: string, cost: number): Promise<string> {
    return this.pool.run({ value, cost }, { name: 'hash' }) as Promise<string>;
  }

  compare(value: string, hash: string): Promise<boolean> {
    return this.pool.run({ value, hash }, { name: 'compare' }) as Promise<boolean>;
  }

  /**
   * Stops the workers at once: hashes still queued or running are dropped (their callers fail). By
   * the time the app closes, every request that waited for one was answered or cut at the drain
   * limit; a queue of cut sign-ins at a high cost must not hold the shutdown past its grace period.
   */
  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
