import { Writable } from 'node:stream';
import type { MikroORM } from '@mikro-orm/postgresql';
import { describe, expect, it } from 'vitest';
import { OutageLog } from '../src/db/outage.js';
import { createLogger } from '../src/logger.js';
import { DEFAULT_WEBHOOK_OPTIONS, WebhookDispatcher } from '../src/modules/webhooks/webhook-dispatcher.js';
import type { DestinationPolicy } from '../src/modules/webhooks/destination.js';
import type { SecretBox } from '../src/secret-box.js';
import { waitUntil } from './support/wait.js';

// How the webhook dispatcher's round orders its claims and attempts (src/modules/webhooks/webhook-dispatcher.ts).
// The interleavings below — an attempt ending while a claim is in flight, one lane's claim failing —
// cannot be forced through a real database and receiver, so the dispatcher's three steps that touch
// them (claim, post, record) are replaced here; test/webhooks.test.ts and test/webhook-faults.test.ts
// cover the real ones end to end.

interface Claimed {
  id: string;
  endpoint_id: string;
  locked_until: string;
}
type Lane = 'good' | 'failing';
interface Steps {
  claim(lane: Lane, limit: number): Promise<Claimed[]>;
  post(message: Claimed): Promise<{ status: number | null; error: string | null }>;
  record(message: Claimed): Promise<void>;
  release(message: Claimed): Promise<void>;
}

const message = (id: string): Claimed => ({ id, endpoint_id: 'endpoint-1', locked_until: '2026-11-30 00:00:00+00' });

/** A dispatcher polling once a minute whose steps are `steps`; `errors` collects what its rounds threw. */
function dispatcher(steps: Partial<Steps>) {
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    { logLevel: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logs.push(JSON.parse(chunk.toString('utf8')));
        done();
      },
    }),
  );
  const built = new WebhookDispatcher({} as MikroORM, {} as DestinationPolicy, {} as SecretBox, logger, new OutageLog(logger), {
    ...DEFAULT_WEBHOOK_OPTIONS,
    pollIntervalMs: 60_000,
  });
  Object.assign(built as unknown as Steps, steps);
  return { dispatcher: built, logs };
}

/** Far less than the minute a missed claim would wait; polled closely. */
const until = (condition: () => boolean, what: string) => waitUntil(condition, what, 3_000, 10);

describe('the webhook dispatcher', () => {
  it("claims again when an attempt ends during a claim that could not yet see the endpoint's next message", async () => {
    const posted: string[] = [];
    let firstRecorded!: () => void;
    const recorded = new Promise<void>((resolve) => (firstRecorded = resolve));
    let goodClaims = 0;
    const { dispatcher: worker } = dispatcher({
      async claim(lane) {
        if (lane === 'failing') return [];
        goodClaims += 1;
        if (goodClaims === 1) return [message('A')];
        // Made while A was in flight: its endpoint was busy, so B was not claimable; A ends before
        // this claim answers.
        if (goodClaims === 2) {
          await recorded;
          await new Promise((resolve) => setImmediate(resolve));
          return [];
        }
        return goodClaims === 3 ? [message('B')] : [];
      },
      async post(claimed) {
        posted.push(claimed.id);
        return { status: 200, error: null };
      },
      async record(claimed) {
        if (claimed.id === 'A') firstRecorded();
      },
    });
    worker.start();
    try {
      // Before, the round ended with nothing running and B waited for the next poll (a minute here).
      await until(() => posted.includes('B'), 'B posted');
      expect(posted).toEqual(['A', 'B']);
    } finally {
      await worker.stop();
    }
  });

  it("attempts what one lane claimed when the other lane's claim fails, and reports the failure", async () => {
    const posted: string[] = [];
    let claims = 0;
    const { dispatcher: worker, logs } = dispatcher({
      async claim(lane) {
        claims += 1;
        if (claims > 2) return [];
        if (lane === 'good') return [message('A')];
        throw new Error('could not claim: the statement failed');
      },
      async post(claimed) {
        posted.push(claimed.id);
        return { status: 200, error: null };
      },
      async record() {},
    });
    worker.start();
    try {
      // Before, A was claimed (an attempt counted, the endpoint held) and then neither attempted nor
      // released: it waited for its claim to lapse.
      await until(() => posted.includes('A'), 'A posted');
      await until(() => logs.some((line) => line.msg === 'webhook dispatcher failed; retrying later'), 'the failure logged');
    } finally {
      await worker.stop();
    }
  });
});
