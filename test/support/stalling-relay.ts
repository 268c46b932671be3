import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay to the PostgreSQL server of a database URL that passes traffic until a client sends
 * bytes containing `text` (a table name, say), and from then on stops answering: those bytes and
 * everything after them are held back, and every connection, open or new, stays open without a
 * word either way — a database that hangs (a frozen server, a network that drops packets), not one
 * that is down (which refuses connections).
 */
export class StallingRelay {
  /** When the relay stopped answering, or `undefined` while it still passes traffic. */
  stalledAt: number | undefined;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** `databaseUrl` reached through the relay. */
    readonly url: string,
  ) {}

  /** A relay, listening on a free loopback port, to the server of `databaseUrl`. */
  static async start(databaseUrl: string, text: string): Promise<StallingRelay> {
    const target = new URL(databaseUrl);
    const needle = Buffer.from(text);
    let relay: StallingRelay | undefined;
    const server = createServer((client) => {
      const self = relay!;
      self.track(client);
      if (self.stalledAt !== undefined) return;
      const upstream = connect(Number(target.port || 5432), target.hostname);
      self.track(upstream);
      client.on('data', (chunk: Buffer) => {
        if (self.stalledAt === undefined && chunk.includes(needle)) self.stalledAt = Date.now();
        if (self.stalledAt === undefined) upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (self.stalledAt === undefined) client.write(chunk);
      });
      // A side that closes takes the other with it (the server under test closing a connection it
      // gave up on must not leave the upstream one open).
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = new URL(databaseUrl);
    url.hostname = '127.0.0.1';
    url.port = String((server.address() as { port: number }).port);
    relay = new StallingRelay(server, url.toString());
    return relay;
  }

  /** Drops every connection and stops listening. */
  async close(): Promise<void> {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
  }
}
