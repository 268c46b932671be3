import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `condition` until it returns something truthy (then returns it), failing after `timeoutMs`. */
export async function waitUntil<T>(condition: () => T | Promise<T>, what: string, timeoutMs = 10_000, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(intervalMs);
  }
}

/** Runs `call`, failing if it has not answered within `ms` (a bounded wait, never a timing assertion). */
export async function within<T>(ms: number, call: () => Promise<T>, what = 'the call'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([call(), late]);
  } finally {
    clearTimeout(timer);
  }
}
