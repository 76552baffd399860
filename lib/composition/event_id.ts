/**
 * Stable event ids: the same event always gets the same id, whoever reads
 * it, so receivers can drop duplicates.
 *
 * @module
 */
import type { LeaseEvent } from "../kit/types.ts";

/**
 * The stable id of an event: the time it names, then a digest of what
 * happened, so ids sort by time and `--since` can take one.
 *
 * @param parts The resource, kind, lease id and times that make it unique.
 * @param atMs The event's time, in epoch ms.
 * @returns `1764777600000-<20 hex digits>`.
 * @example
 * ```ts
 * import { eventId } from "./event_id.ts";
 * eventId(["deploy", "released", "0".repeat(32), 5], 5).startsWith("0000000000005-"); // true
 * ```
 */
export function eventId(parts: (string | number)[], atMs: number): string {
  const digest = sha256Hex(new TextEncoder().encode(parts.join("\u0000")));
  return `${String(Math.max(0, atMs)).padStart(13, "0")}-${
    digest.slice(0, 20)
  }`;
}

/**
 * The time an event id names, in epoch ms, or `undefined` when `text` is
 * not an event id.
 * @example
 * ```ts
 * import { eventIdTime } from "./event_id.ts";
 * eventIdTime("0000000000005-0123456789abcdef0123"); // 5
 * ```
 */
export function eventIdTime(text: string): number | undefined {
  const match = /^(\d{13})-[0-9a-f]{20}$/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The id of a recorded history event. Recorded `expired` events carry the
 * lease's expiry as their time on every store, so a watcher that notices
 * an expiry first names it as the store will.
 * @example
 * ```ts ignore
 * const id = historyEventId(event);
 * ```
 */
export function historyEventId(event: LeaseEvent): string {
  return eventId([
    event.resource,
    event.kind,
    event.id,
    event.at.getTime(),
    event.expires.getTime(),
  ], event.at.getTime());
}

/** SHA-256's round constants: the first 32 bits of the fractional parts of
 * the cube roots of the first 64 primes (FIPS 180-4, 4.2.2). */
const K = (() => {
  const primes: number[] = [];
  for (let n = 2; primes.length < 64; n++) {
    if (primes.every((p) => n % p !== 0)) primes.push(n);
  }
  return Uint32Array.from(primes, (p) => (Math.cbrt(p) % 1) * 2 ** 32);
})();

/**
 * SHA-256 of `bytes` as hex, synchronously (FIPS 180-4). Written here
 * because loading `node:crypto` cost every command about a third of an
 * empty `deno run`, and Web Crypto's digest is asynchronous; the event ids
 * it makes are checked against `node:crypto` in the tests.
 */
export function sha256Hex(bytes: Uint8Array): string {
  const length = Math.ceil((bytes.length + 9) / 64) * 64;
  const padded = new Uint8Array(length);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(length - 8, Math.floor(bytes.length / 2 ** 29));
  view.setUint32(length - 4, (bytes.length * 8) >>> 0);
  const h = Uint32Array.of(
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  );
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) +
        ((e & f) ^ (~e & g)) + K[i] + w[i];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) +
        ((a & b) ^ (a & c) ^ (b & c));
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  return [...h].map((x) => x.toString(16).padStart(8, "0")).join("");
}
