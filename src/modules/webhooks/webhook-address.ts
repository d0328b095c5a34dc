import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";

/**
 * Where webhooks may go. A receiver URL is the operator's users' input, and the server POSTs to it from
 * inside the operator's network: it must not reach cloud metadata services (credentials), link-local
 * or multicast addresses, ever; nor loopback and private ranges unless the operator allows them
 * (WEBHOOK_ALLOW_PRIVATE, for on-premise receivers). Checked at registration and again on every
 * connection, on the address actually connected to (a name may resolve elsewhere by then).
 */

const never = new BlockList();
never.addSubnet("0.0.0.0", 8, "ipv4"); // "this network"; 0.0.0.0 reaches the local host on Linux
never.addSubnet("169.254.0.0", 16, "ipv4"); // link-local, where 169.254.169.254 (metadata) lives
never.addAddress("100.100.100.200", "ipv4"); // Alibaba Cloud metadata (inside the shared range below)
never.addSubnet("224.0.0.0", 4, "ipv4"); // multicast
never.addSubnet("240.0.0.0", 4, "ipv4"); // reserved, broadcast
never.addAddress("::", "ipv6");
never.addSubnet("fe80::", 10, "ipv6"); // link-local
never.addSubnet("ff00::", 8, "ipv6"); // multicast
never.addAddress("fd00:ec2::254", "ipv6"); // AWS metadata over IPv6 (inside the unique-local range below)
never.addSubnet("64:ff9b::", 96, "ipv6"); // NAT64: an IPv4 address (a metadata one too) behind a translator

const privateRanges = new BlockList();
privateRanges.addSubnet("127.0.0.0", 8, "ipv4");
privateRanges.addSubnet("10.0.0.0", 8, "ipv4");
privateRanges.addSubnet("172.16.0.0", 12, "ipv4");
privateRanges.addSubnet("192.168.0.0", 16, "ipv4");
privateRanges.addSubnet("100.64.0.0", 10, "ipv4"); // carrier-grade NAT, shared address space
privateRanges.addSubnet("198.18.0.0", 15, "ipv4"); // benchmarking
privateRanges.addAddress("::1", "ipv6");
privateRanges.addSubnet("fc00::", 7, "ipv6"); // unique local
privateRanges.addSubnet("fec0::", 10, "ipv6"); // site-local (deprecated)

// Names that reach a metadata service without DNS telling: refused whatever they resolve to.
const metadataHostnames = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.internal",
]);

export interface AddressPolicy {
  /** Loopback, RFC 1918, unique-local and shared ranges allowed (metadata and link-local never are). */
  allowPrivate: boolean;
}

export class WebhookAddressError extends Error {
  override readonly name = "WebhookAddressError";
}

const familyOf = (address: string) => (isIP(address) === 6 ? "ipv6" : "ipv4");

/** Why the address may not be connected to, or undefined when it may. IPv4-mapped IPv6 is judged as its IPv4 address. */
export function refusedAddress(address: string, policy: AddressPolicy): string | undefined {
  if (isIP(address) === 0) return `${address} is not an IP address`;
  const family = familyOf(address);
  if (never.check(address, family)) return `${address} is a link-local, metadata, multicast or reserved address`;
  if (!policy.allowPrivate && privateRanges.check(address, family)) {
    return `${address} is a loopback or private address (WEBHOOK_ALLOW_PRIVATE=true allows private ranges)`;
  }
  return undefined;
}

/** `[::1]` → `::1`; names lower-cased without a trailing dot. */
const bareHost = (hostname: string) =>
  hostname
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.$/, "")
    .toLowerCase();

/** The URL, if webhooks may be sent to it: http(s), no credentials, not a metadata name or a refused IP literal. */
export function parseWebhookUrl(text: string, policy: AddressPolicy): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WebhookAddressError("is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new WebhookAddressError("must be an http or https URL");
  if (url.username !== "" || url.password !== "") throw new WebhookAddressError("must not carry credentials");
  const host = bareHost(url.hostname);
  if (host === "") throw new WebhookAddressError("has no host");
  if (metadataHostnames.has(host)) throw new WebhookAddressError(`${host} is a cloud metadata service`);
  if (isIP(host) !== 0) {
    const refused = refusedAddress(host, policy);
    if (refused) throw new WebhookAddressError(refused);
  }
  return url;
}

type Resolver = (hostname: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (hostname) =>
  new Promise((resolve, reject) => dnsLookup(hostname, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

/** Every address the URL's host resolves to must be allowed (registration: a name that resolves nowhere is refused too). */
export async function checkWebhookUrl(text: string, policy: AddressPolicy, resolve: Resolver = systemResolver): Promise<URL> {
  const url = parseWebhookUrl(text, policy);
  const host = bareHost(url.hostname);
  if (isIP(host) !== 0) return url;
  let addresses: LookupAddress[];
  try {
    addresses = await resolve(host);
  } catch (error) {
    throw new WebhookAddressError(`${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  for (const { address } of addresses) {
    const refused = refusedAddress(address, policy);
    if (refused) throw new WebhookAddressError(`${host} resolves to ${refused}`);
  }
  return url;
}

/**
 * A `lookup` for http.request: resolves as Node would, then refuses the connection unless every address
 * is allowed, so what is checked is what is connected to (no re-resolution in between).
 */
export function guardedLookup(policy: AddressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "", 0);
      const refused = addresses.map(({ address }) => refusedAddress(address, policy)).find((reason) => reason !== undefined);
      if (refused) return callback(new WebhookAddressError(`${hostname} resolves to ${refused}`), "", 0);
      if (addresses.length === 0) return callback(new WebhookAddressError(`${hostname} does not resolve`), "", 0);
      if (options.all) return (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}
