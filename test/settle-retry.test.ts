import { describe, expect, it } from 'vitest';
import { SettleRetry } from '../src/db/queue.js';

// How a queue's worker records what became of a claimed row (src/db/queue.ts). Only the database's
// unavailability is waited out for as long as it lasts; an error of the statement itself (a value
// PostgreSQL refuses, say) is given up after a few tries, so it cannot hold the row and the worker's
// round for ever, and it does not pause the worker's claims as an outage does.
describe('SettleRetry', () => {
  const outage = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  const refused = () => Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });

  it('gives up on an error of the statement after a few tries, without pausing the claims', async () => {
    const settling = new SettleRetry(() => false);
    let tries = 0;
    const landed = await settling.untilItLands(
      async () => {
        tries += 1;
        throw refused();
      },
      () => {},
    );
    expect(landed).toBe(false);
    expect(tries).toBe(6);
    expect(settling.pausing()).toBe(false);
  });

  it('waits out an outage, however many tries it takes, and pauses the claims meanwhile', async () => {
    const settling = new SettleRetry(() => false);
    let tries = 0;
    const landed = await settling.untilItLands(
      async () => {
        tries += 1;
        if (tries < 9) throw outage();
      },
      () => {},
    );
    expect(landed).toBe(true);
    expect(tries).toBe(9);
    expect(settling.pausing()).toBe(true);
  }, 30_000);

  it('gives up on an outage once the worker is stopping and a few more tries failed', async () => {
    const settling = new SettleRetry(() => true);
    let tries = 0;
    expect(
      await settling.untilItLands(
        async () => {
          tries += 1;
          throw outage();
        },
        () => {},
      ),
    ).toBe(false);
    expect(tries).toBe(6);
  }, 30_000);
});
