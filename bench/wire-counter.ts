/**
 * A TCP relay between the server under test and PostgreSQL that counts what crosses it, read from
 * the wire protocol itself (https://www.postgresql.org/docs/15/protocol-message-formats.html), so
 * the figures cover every client in the server (the ORM, raw SQL, the rate limiter) alike:
 *
 * - statements: simple `Query` messages plus extended-protocol `Execute` messages;
 * - round trips: every `ReadyForQuery` the server sends (one per simple query or `Sync`);
 * - transactions: `ReadyForQuery` with status idle after work (an autocommit statement or a COMMIT).
 *
 * Plain-text connections only: the bench's server reaches a loopback PostgreSQL without TLS.
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

export interface WireCounts {
  statements: number;
  roundTrips: number;
  transactions: number;
}

/** Splits a byte stream into protocol messages; the first `untyped` ones (the start-up message) carry no type byte. */
class MessageReader {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(
    private untyped: number,
    private readonly onMessage: (type: number, body: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const typed = this.untyped === 0;
      const header = typed ? 5 : 4;
      if (this.buffer.length < header) return;
      const length = this.buffer.readUInt32BE(typed ? 1 : 0);
      const total = typed ? length + 1 : length;
      if (this.buffer.length < total) return;
      const message = this.buffer.subarray(0, total);
      this.buffer = this.buffer.subarray(total);
      if (typed) this.onMessage(message[0], message.subarray(5));
      else {
        this.untyped--;
        this.onMessage(0, message.subarray(4));
      }
    }
  }
}

export class WireCounter {
  private readonly counts: WireCounts = { statements: 0, roundTrips: 0, transactions: 0 };
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(private readonly target: { host: string; port: number }) {}

  /** Starts listening on a free loopback port; returns it. */
  async listen(): Promise<number> {
    const server = createServer((client) => this.relay(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as { port: number }).port;
  }

  /** The counts so far (a copy). */
  snapshot(): WireCounts {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
  }

  private relay(client: Socket): void {
    const upstream = connect(this.target);
    this.sockets.add(client).add(upstream);
    const fromClient = new MessageReader(1, (type) => {
      if (type === 0x51 /* Q */ || type === 0x45 /* E */) this.counts.statements++;
    });
    let busy = false;
    const fromServer = new MessageReader(0, (type, body) => {
      if (type !== 0x5a /* Z: ReadyForQuery */) {
        if (type === 0x43 /* C: CommandComplete */) busy = true;
        return;
      }
      this.counts.roundTrips++;
      if (busy && body[0] === 0x49 /* I: idle */) this.counts.transactions++;
      busy = false;
    });
    client.on('data', (chunk) => {
      fromClient.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      fromServer.push(chunk);
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }
}
