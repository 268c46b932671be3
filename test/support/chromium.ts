import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium package; `.ci/run` installs it when it is missing. */
export const CHROMIUM = '/usr/bin/chromium';

/** Whether the browser tests can run here; warns once for `file` (what it skips) when they cannot. */
export function chromiumAvailable(file: string, skipped: string): boolean {
  if (existsSync(CHROMIUM)) return true;
  console.warn(`${file}: ${skipped} SKIPPED — no Chromium at ${CHROMIUM}. Install it with \`apt-get install -y chromium\`.`);
  return false;
}

/**
 * Headless Debian Chromium through playwright-core (no downloaded browser). Background networking
 * is off: this machine's closed network would otherwise refuse its connections at every start.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
