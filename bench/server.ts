/**
 * The server under test, forked by bench/run.ts: the real application (loadConfig + createApp +
 * listen) configured by the environment the bench passes, plus an IPC channel that reports the URL,
 * memory and event-loop delay. It does nothing a production `node dist/src/main.js` would not do,
 * apart from that monitor (one 1 ms timer).
 */
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { eventLoopMonitor, serveParent } from './child.js';

const monitor = await eventLoopMonitor();
try {
  // The bench builds this process's environment from scratch, so reading it directly is intended.
  const config = loadConfig(process.env);
  const app = await createApp(config);
  const url = await app.listen();
  serveParent({ onStop: () => app.close() }, monitor);
  process.send?.({ type: 'ready', url });
} catch (error) {
  process.send?.({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  setTimeout(() => process.exit(1), 50);
}
