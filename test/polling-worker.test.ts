import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PollingWorker } from '../src/polling-worker.js';
import { waitUntil } from './support/wait.js';

// The schedule the mail outbox, the webhook dispatcher and maintenance share (src/polling-worker.ts).
// A wake is what sends a new email at once; the regular poll is only the fallback. These cases pin
// the order of a wake and the end of a round, which test/mail-delivery.test.ts ("waking the worker
// after commit") met about once in 30 runs on a loaded machine: a reset email waited an hour.
describe('PollingWorker', () => {
  const HOUR_MS = 3_600_000;

  /** A worker polling hourly whose rounds run `round`; `rounds` counts them. */
  function hourly(round: (worker: PollingWorker, count: number) => Promise<void> | void) {
    const state = { rounds: 0 };
    const worker: PollingWorker = new PollingWorker(
      async () => {
        state.rounds += 1;
        await round(worker, state.rounds);
      },
      HOUR_MS,
      (error) => {
        throw error;
      },
    );
    return { worker, state };
  }

  /** Far less than the hour a lost wake would wait; polled closely. */
  const until = (condition: () => boolean, what: string) => waitUntil(condition, what, 2_000, 10);

  it('runs another round after a wake that came while the round was ending, not an hour later', async () => {
    // The wake's timer is still pending when the round's end schedules the next regular poll.
    const { worker, state } = hourly((self, count) => {
      if (count === 1) self.wake();
    });
    worker.start();
    try {
      await until(() => state.rounds >= 2, 'a second round');
    } finally {
      await worker.stop();
    }
  });

  it('runs another round after a wake during a round that is still busy', async () => {
    let release!: () => void;
    const busy = new Promise<void>((resolve) => (release = resolve));
    const { worker, state } = hourly(async (_self, count) => {
      if (count === 1) await busy;
    });
    worker.start();
    try {
      await until(() => state.rounds === 1, 'the first round');
      worker.wake();
      await sleep(20);
      release();
      await until(() => state.rounds >= 2, 'a second round');
    } finally {
      await worker.stop();
    }
  });

  it('never runs two rounds at once, however many wakes, and runs none after stop', async () => {
    let running = 0;
    let overlapped = false;
    const { worker, state } = hourly(async () => {
      running += 1;
      overlapped ||= running > 1;
      await sleep(5);
      running -= 1;
    });
    worker.start();
    for (let wake = 0; wake < 50; wake += 1) {
      worker.wake();
      await sleep(1);
    }
    await worker.stop();
    const stoppedAt = state.rounds;
    worker.wake();
    await sleep(50);
    expect(overlapped).toBe(false);
    expect(state.rounds).toBeGreaterThan(1);
    expect(state.rounds).toBe(stoppedAt);
  });
});
