import { connect, createServer, type Server, type Socket } from 'node:net';
import { unusedPort } from './smtp.js';

/**
 * A TCP relay to `target` that can be cut and restored: a real outage of whatever is behind it, as
 * the server sees one. {@link cut} drops every connection and closes the port, so new ones are
 * refused, until {@link up} listens again.
 */
export class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /**
   * A relay, already up, to the PostgreSQL server of `databaseUrl` on a free loopback port; `url` is
   * `databaseUrl` reached through it.
   */
  static async toDatabase(databaseUrl: string): Promise<{ relay: Relay; url: string }> {
    const target = new URL(databaseUrl);
    const relay = new Relay(await unusedPort(), { host: target.hostname, port: Number(target.port || 5432) });
    await relay.up();
    const viaRelay = new URL(databaseUrl);
    viaRelay.hostname = '127.0.0.1';
    viaRelay.port = String(relay.port);
    return { relay, url: viaRelay.toString() };
  }

  async up(): Promise<void> {
    if (this.server) return;
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('error', () => socket.destroy());
        socket.on('close', () => this.sockets.delete(socket));
      }
      client.pipe(upstream).pipe(client);
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      // The port was free when chosen; another test file may have taken it since the relay was cut.
      server.once('error', (error) => reject(new Error(`the relay could not listen on port ${this.port} again: ${error.message}`)));
      server.listen(this.port, '127.0.0.1', resolve);
    });
  }

  async cut(): Promise<void> {
    const closed = new Promise((resolve) => (this.server ? this.server.close(resolve) : resolve(undefined)));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.server = undefined;
  }
}
