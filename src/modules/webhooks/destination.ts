import { lookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { urlHostname, type WebhookDestinations } from '../../config/config.js';

/** Longest endpoint URL accepted. */
export const MAX_URL_LENGTH = 2048;

/** Why a URL cannot be an endpoint, or cannot be called now; the message is written for an admin. */
export class DestinationRefusedError extends Error {}

/** The host's addresses did not come within {@link LOOKUP_TIMEOUT_MS}: its DNS is slow or down. */
export class LookupTimeoutError extends Error {
  constructor(readonly host: string) {
    super(`the host ${host} did not resolve within ${LOOKUP_TIMEOUT_MS / 1000} s`);
  }
}

/** Resolves a host name to every address it has (the system resolver by default; tests give their own). */
export type HostResolver = (host: string) => Promise<LookupAddress[]>;

/** IPv6 global unicast (2000::/3): anything else, IPv4-compatible `::a.b.c.d` forms included, is refused. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

/**
 * How long a caller waits for the addresses of a host: an endpoint being registered, or one attempt
 * (within its own 10 s). Long enough for the system resolver to give up on an unreachable first
 * name server (5 s by default) and ask the next.
 */
export const LOOKUP_TIMEOUT_MS = 8_000;

/**
 * Lookups running at once. `dns.lookup` runs getaddrinfo on libuv's small thread pool (4 threads,
 * shared with file, crypto and zlib work) and cannot be cancelled: a lookup keeps its thread until
 * DNS answers, however long after its callers stopped waiting.
 */
const MAX_CONCURRENT_LOOKUPS = 2;

/** The lookup of one host: started when a thread is free, settled when DNS answers. */
interface HostLookup {
  host: string;
  result: Promise<LookupAddress[]>;
  settle: { resolve: (addresses: LookupAddress[]) => void; reject: (error: unknown) => void };
  started: boolean;
  /** Callers waiting for it. */
  waiting: number;
}

/**
 * Host lookups, at most {@link MAX_CONCURRENT_LOOKUPS} at once and one per host: whoever needs a
 * host whose lookup is already under way (or waiting for a thread) waits for that one rather than
 * starting another. A host whose DNS never answers thus holds one lookup, not all of them, whatever
 * its number of endpoints and attempts, and every other host keeps being resolved. A lookup that
 * nobody waits for any longer is dropped before it starts. Nothing is cached: a lookup that has
 * answered is done, and the next caller gets a fresh one.
 */
class HostLookups {
  private running = 0;
  private readonly byHost = new Map<string, HostLookup>();
  /** Lookups waiting for a thread, first come first served. */
  private readonly queue: HostLookup[] = [];

  constructor(
    private readonly resolveHost: HostResolver,
    private readonly limit: number,
  ) {}

  /** The addresses of `host`, or a rejection with `signal`'s reason as soon as it aborts. */
  lookup(host: string, signal: AbortSignal): Promise<LookupAddress[]> {
    if (signal.aborted) return Promise.reject(signal.reason);
    let lookup = this.byHost.get(host);
    if (!lookup) {
      let settle!: HostLookup['settle'];
      const result = new Promise<LookupAddress[]>((resolve, reject) => (settle = { resolve, reject }));
      // Its callers may all have stopped waiting by the time it fails.
      result.catch(() => {});
      lookup = { host, result, settle, started: false, waiting: 0 };
      this.byHost.set(host, lookup);
      this.queue.push(lookup);
      this.startNext();
    }
    const joined = lookup;
    joined.waiting += 1;
    return abortable(joined.result, signal).finally(() => {
      joined.waiting -= 1;
      if (joined.waiting === 0 && !joined.started) this.drop(joined);
    });
  }

  private startNext(): void {
    while (this.running < this.limit && this.queue.length > 0) {
      const lookup = this.queue.shift()!;
      lookup.started = true;
      this.running += 1;
      let answer: Promise<LookupAddress[]>;
      try {
        answer = this.resolveHost(lookup.host);
      } catch (error) {
        answer = Promise.reject(error);
      }
      void answer.then(lookup.settle.resolve, lookup.settle.reject).finally(() => {
        this.running -= 1;
        if (this.byHost.get(lookup.host) === lookup) this.byHost.delete(lookup.host);
        this.startNext();
      });
    }
  }

  private drop(lookup: HostLookup): void {
    const index = this.queue.indexOf(lookup);
    if (index !== -1) this.queue.splice(index, 1);
    if (this.byHost.get(lookup.host) === lookup) this.byHost.delete(lookup.host);
  }
}

/** `promise`, or a rejection with `signal`'s reason as soon as it aborts. */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
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
 * yesterday and to 127.0.0.1 now (DNS rebinding) is refused too. Neither waits more than
 * {@link LOOKUP_TIMEOUT_MS} for DNS, and a host whose DNS hangs delays no other host (see HostLookups).
 */
export class DestinationPolicy {
  private readonly lookups: HostLookups;
  /** `rules.allowedHosts` as the URL parser writes hosts, like {@link hostOf} (loadConfig keeps them so already). */
  private readonly allowedHosts: ReadonlySet<string>;

  constructor(
    private readonly rules: WebhookDestinations,
    resolveHost: HostResolver = systemResolver,
  ) {
    this.lookups = new HostLookups(resolveHost, MAX_CONCURRENT_LOOKUPS);
    this.allowedHosts = new Set(rules.allowedHosts.map((host) => urlHostname(host) ?? host));
  }

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
    // The parser takes ports up to 65535; port 0 cannot be connected to.
    if (url.port === '0') throw new DestinationRefusedError('The port must be between 1 and 65535.');
    // Percent-encoding can make the stored form several times longer than what was sent.
    if (url.href.length > MAX_URL_LENGTH) throw new DestinationRefusedError(`The URL must be at most ${MAX_URL_LENGTH} characters once encoded.`);
    return url;
  }

  /**
   * The addresses to connect to for `url`: its IP literal, or what its host name resolves to now.
   * DestinationRefusedError when any of them is not a public unicast address (loopback, private,
   * link-local, unique-local, carrier-grade NAT, unspecified, multicast, reserved, or an IPv6 form
   * that embeds an IPv4 address) or the name does not resolve, unless the host is allow-listed;
   * LookupTimeoutError when the name has not resolved within {@link LOOKUP_TIMEOUT_MS}; `signal`'s
   * reason as soon as it aborts.
   */
  async resolve(url: URL, signal?: AbortSignal): Promise<LookupAddress[]> {
    const host = hostOf(url);
    const allowed = this.allowedHosts.has(host);
    const family = isIP(host);
    let addresses: LookupAddress[];
    if (family !== 0) {
      addresses = [{ address: host, family }];
    } else {
      const timeout = AbortSignal.timeout(LOOKUP_TIMEOUT_MS);
      try {
        addresses = await this.lookups.lookup(host, signal ? AbortSignal.any([signal, timeout]) : timeout);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (timeout.aborted) throw new LookupTimeoutError(host);
        // An allow-listed host is the operator's own: why it failed helps, and reveals nothing new.
        if (allowed) throw new DestinationRefusedError(`The host ${host} could not be resolved (${(error as NodeJS.ErrnoException).code ?? 'lookup failed'}).`);
        throw notPublic(host);
      }
    }
    if (allowed) return addresses;
    if (addresses.length === 0 || addresses.some(({ address }) => !isPublic(address))) throw notPublic(host);
    return addresses;
  }
}

/**
 * The one refusal of a host that is not allow-listed and does not resolve to public addresses only,
 * whether it does not resolve at all or resolves to an address of any other kind: the answer must
 * not tell whoever holds an admin account which internal names exist, or what they point at.
 */
function notPublic(host: string): DestinationRefusedError {
  return new DestinationRefusedError(`The host ${host} does not resolve to public addresses only; webhooks only go to public addresses unless the host is in WEBHOOK_ALLOWED_HOSTS.`);
}

/** Whether `address` is public unicast: IPv4 (an IPv4-mapped IPv6 address counts as its IPv4 one), or IPv6 in 2000::/3. */
function isPublic(address: string): boolean {
  const parsed = ipaddr.process(address);
  return parsed.range() === 'unicast' && (parsed.kind() === 'ipv4' || parsed.match(GLOBAL_UNICAST_V6));
}

/**
 * The host of `url` as the URL parser wrote it (names lower-cased, IP addresses in one form: `127.1`
 * is `127.0.0.1`, `[0:0:0:0:0:0:0:1]` is `::1`), IPv6 without brackets: the form of the allow-list.
 */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}
