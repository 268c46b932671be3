import { lookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { WebhookDestinations } from '../../config/config.js';

/** Longest endpoint URL accepted. */
export const MAX_URL_LENGTH = 2048;

/** Why a URL cannot be an endpoint, or cannot be called now; the message is written for an admin. */
export class DestinationRefusedError extends Error {}

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
  constructor(private readonly rules: WebhookDestinations) {}

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
        addresses = await lookup(host, { all: true, verbatim: true });
      } catch (error) {
        throw new DestinationRefusedError(`The host ${host} could not be resolved (${(error as NodeJS.ErrnoException).code ?? 'lookup failed'}).`);
      }
    }
    if (this.rules.allowedHosts.includes(host)) return addresses;
    for (const { address } of addresses) {
      const range = ipaddr.process(address).range();
      if (range !== 'unicast') {
        throw new DestinationRefusedError(
          `The host ${host} resolves to ${address}, a ${range} address; webhooks only go to public addresses unless the host is in WEBHOOK_ALLOWED_HOSTS.`,
        );
      }
    }
    return addresses;
  }
}

/** The host of `url` as written (lower-cased by the URL parser), IPv6 without brackets. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}
