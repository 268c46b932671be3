import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitUntil } from './wait.js';

export const CREATE_ENDPOINT = 'mutation Create($url: String!, $events: [String!]!) { createWebhookEndpoint(url: $url, events: $events) { secret endpoint { id url events createdAt } } }';
export const DELETE_ENDPOINT = 'mutation Delete($id: ID!) { deleteWebhookEndpoint(id: $id) }';

/** A request the receiver got, as it arrived. */
export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  body: string;
  /** Whether the receiver has answered it (a hanging receiver has not). */
  answered: boolean;
}

/**
 * How to answer the nth request (from 1): a status, `hang` (never answer; the connection stays
 * open until the sender gives up), `drop` (close the connection without an answer), or a function
 * that answers by itself (a redirect).
 */
export type Answer = number | 'hang' | 'drop' | ((res: ServerResponse) => void);

export interface WebhookReceiver {
  /** `http://127.0.0.1:<port>/hooks`. */
  readonly url: string;
  readonly port: number;
  readonly received: ReceivedWebhook[];
  /** Sets how the next requests are answered (default: 204). */
  answerWith(answer: (n: number) => Answer): void;
  /** The first request received that matches, waiting up to `timeoutMs`. */
  waitFor(match: (hook: ReceivedWebhook) => boolean, timeoutMs?: number): Promise<ReceivedWebhook>;
  close(): Promise<void>;
}

/** A real HTTP server on loopback that records what webhooks deliver, as a receiving service would. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  let answer: (n: number) => Answer = () => 204;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const hook: ReceivedWebhook = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered: false };
      received.push(hook);
      const decided = answer(received.length);
      if (decided === 'hang') return;
      hook.answered = true;
      if (decided === 'drop') req.socket.destroy();
      else if (typeof decided === 'function') decided(res);
      else res.writeHead(decided).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    port,
    received,
    answerWith(next) {
      answer = next;
    },
    waitFor(match, timeoutMs = 10_000) {
      return waitUntil(() => received.find(match), 'a webhook the test expects', timeoutMs);
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
