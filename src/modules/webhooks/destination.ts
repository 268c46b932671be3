import { lookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { WebhookDestinations } from '../../config/config.js';

/** Longest endpoint URL accepted. */
export const MAX_URL_LENGTH = 2048;

/** Why a URL cannot be an endpoint, or cannot be called now; the message is written for an admin. */
export class DestinationRefusedError extends Error {}

/** Resolves a host name to every address it has (the system resolver by default; tests give their own). */
export type HostResolver = (host: string) => Promise<LookupAddress[]>;

/** IPv6 global unicast (2000::/3): anything else, IPv4-compatible `::a.b.c.d` forms included, is refused. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * Lookups running at once. `dns.lookup` runs getaddrinfo on libuv's small thread pool (4 threads,
 * shared with file, crypto and zlib work) and cannot be cancelled: a host whose DNS never answers
 * would otherwise let attempts fill the pool, each timing out and starting another lookup.
 */
const MAX_CONCURRENT_LOOKUPS = 2;

/** Runs at most `limit` of the given tasks at once; the others wait their turn. */
function limitConcurrency(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async (task) => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active += 1;
    try {
      return await task();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}

const systemResolver: HostResolver = (host) => lookup(host, { all: true, verbatim: true });

/**
 * Where webhooks may go: `https://` (and `http://` outside production) URLs whose host resolves to
 * public addresses only, unless an operator allow-listed the host (`WEBHOOK_ALLOWED_HOSTS`). Without
 * this, an admin account (or whoever holds one) could make the server call its own loopback services,
 * the cloud metadata endpoint (169.254.169.254) or the private network, and read the answers' status
 * codes in the delivery log.
 *
 * The check runs when an endpoint is registered and again before every attempt, on the addresses
 * the attempt then connects to (see {@link resolve}): a host that resolved to a public address
 * yesterday and to 127.0.0.1 now (DNS rebinding) is refused too.
 */
export class DestinationPolicy {
  private readonly limited = limitConcurrency(MAX_CONCURRENT_LOOKUPS);

  constructor(
    private readonly rules: WebhookDestinations,
    private readonly resolveHost: HostResolver = systemResolver,
  ) {}

  /** The URL as an endpoint may have it; DestinationRefusedError otherwise. */
  parse(raw: string): URL {
    if (raw.length > MAX_URL_LENGTH) throw new DestinationRefusedError(`The URL must be at most ${MAX_URL_LENGTH} characters.`);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new DestinationRefusedError('Not an absolute URL.');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new DestinationRefusedError('The URL must start with https://.');
    if (this.rules.httpsOnly && url.protocol !== 'https:') throw new DestinationRefusedError('Only https:// URLs are accepted in production.');
    if (url.username !== '' || url.password !== '') throw new DestinationRefusedError('The URL must not contain a user name or password.');
    if (url.hash !== '') throw new DestinationRefusedError('The URL must not have a #fragment.');
    // Percent-encoding can make the stored form several times longer than what was sent.
    if (url.href.length > MAX_URL_LENGTH) throw new DestinationRefusedError(`The URL must be at most ${MAX_URL_LENGTH} characters once encoded.`);
    return url;
  }

  /**
   * The addresses to connect to for `url`: its IP literal, or what its host name resolves to now.
   * DestinationRefusedError when any of them is not a public unicast address (loopback, private,
   * link-local, unique-local, carrier-grade NAT, unspecified, multicast, reserved, or an IPv6 form
   * that embeds an IPv4 address) and the host is not allow-listed, or when the name does not resolve.
   */
  async resolve(url: URL): Promise<LookupAddress[]> {
    const host = hostOf(url);
    const family = isIP(host);
    let addresses: LookupAddress[];
    if (family !== 0) {
      addresses = [{ address: host, family }];
    } else {
      try {
        addresses = await this.limited(() => this.resolveHost(host));
      } catch (error) {
        throw new DestinationRefusedError(`The host ${host} could not be resolved (${(error as NodeJS.ErrnoException).code ?? 'lookup failed'}).`);
      }
    }
    if (this.rules.allowedHosts.includes(host)) return addresses;
    if (addresses.length === 0) throw new DestinationRefusedError(`The host ${host} has no address.`);
    for (const { address } of addresses) {
      const range = rangeOf(address);
      // The address itself is not named: the answer must not map the internal network for whoever
      // holds an admin account.
      if (range !== 'unicast') {
        throw new DestinationRefusedError(`The host ${host} resolves to a ${range} address; webhooks only go to public addresses unless the host is in WEBHOOK_ALLOWED_HOSTS.`);
      }
    }
    return addresses;
  }
}

/** ipaddr.js's name for the range of `address`; an IPv6 address outside 2000::/3 is `reserved`. */
function rangeOf(address: string): string {
  const parsed = ipaddr.process(address);
  const range = parsed.range();
  if (range === 'unicast' && parsed.kind() === 'ipv6' && !parsed.match(GLOBAL_UNICAST_V6)) return 'reserved';
  return range;
}

/** The host of `url` as written (lower-cased by the URL parser), IPv6 without brackets. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}
