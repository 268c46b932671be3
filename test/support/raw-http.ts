import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** What came back on one raw connection until the server closed it (or the wait ran out). */
export interface RawAnswer {
  /** The first status code on the connection, or `null` when nothing (parseable) came back. */
  status: number | null;
  /** The header block of the first answer, names lower-cased. */
  headers: Record<string, string>;
  /** Everything received, as text. */
  text: string;
  /** Whether the server closed (or reset) the connection within the wait. */
  closed: boolean;
  /** Milliseconds from connecting until the server closed the connection (or the wait ended). */
  ms: number;
}

/** Parses the status and headers of the first HTTP answer in `text`. */
function parseAnswer(text: string): Pick<RawAnswer, 'status' | 'headers'> {
  const status = text.match(/^HTTP\/1\.[01] (\d{3})/)?.[1];
  const headers: Record<string, string> = {};
  const head = text.split('\r\n\r\n')[0] ?? '';
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: status ? Number(status) : null, headers };
}

/** An open raw connection to a loopback port, collecting what the server sends. */
export interface RawConnection {
  socket: Socket;
  /** Sends bytes as they are (no framing, no encoding beyond latin1 for strings). */
  write(data: string | Buffer): void;
  /** Resolves when the server has closed the connection, or after `timeoutMs`, with what came back. */
  answer(timeoutMs: number): Promise<RawAnswer>;
  /** Resolves once at least one full header block has arrived (or the connection closed), bounded. */
  headersReceived(timeoutMs: number): Promise<RawAnswer>;
  close(): void;
}

/** Opens a TCP connection to `127.0.0.1:port` and resolves once it is connected. */
export function openRaw(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    const startedAt = performance.now();
    const chunks: Buffer[] = [];
    let closedAt: number | null = null;
    const closed = new Promise<void>((done) => socket.once('close', () => {
      closedAt = performance.now();
      done();
    }));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    const snapshot = (): RawAnswer => {
      const text = Buffer.concat(chunks).toString('latin1');
      return { ...parseAnswer(text), text, closed: closedAt !== null, ms: Math.round((closedAt ?? performance.now()) - startedAt) };
    };
    socket.once('connect', () =>
      resolve({
        socket,
        write: (data) => {
          if (!socket.destroyed) socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
        },
        async answer(timeoutMs) {
          await Promise.race([closed, sleep(timeoutMs)]);
          return snapshot();
        },
        async headersReceived(timeoutMs) {
          const deadline = performance.now() + timeoutMs;
          while (performance.now() < deadline && closedAt === null && !Buffer.concat(chunks).includes('\r\n\r\n')) await sleep(10);
          return snapshot();
        },
        close: () => socket.destroy(),
      }),
    );
    socket.once('error', reject);
  });
}

/** Sends `request` on a fresh connection and returns what came back once the server closed it (bounded). */
export async function rawRequest(port: number, request: string | Buffer, timeoutMs = 10_000): Promise<RawAnswer> {
  const connection = await openRaw(port);
  connection.write(request);
  const answer = await connection.answer(timeoutMs);
  connection.close();
  return answer;
}
