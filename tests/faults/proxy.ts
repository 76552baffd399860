/**
 * A TCP proxy on loopback that can lose answers on cue: once the client
 * sends bytes containing a marker, it passes them on, calls a hook (which
 * pauses the server), and from then on drops whatever the server sends
 * back. That puts a pause exactly in the middle of one chosen command,
 * such as the acquire that carries a unique `--reason`.
 *
 * @module
 */

/** Where `needle` starts in `haystack`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * The ways `text` can appear inside a longer base64 string (etcd's JSON
 * gateway base64-encodes keys and values): one per alignment, each cut to
 * the characters that depend on `text` alone.
 *
 * @param text The marker.
 * @returns Three base64 fragments.
 */
export function base64Fragments(text: string): string[] {
  const bytes = new TextEncoder().encode(text);
  const fragments: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const padded = new Uint8Array(shift + bytes.length);
    padded.set(bytes, shift);
    const encoded = btoa(String.fromCharCode(...padded));
    const from = Math.ceil(shift * 8 / 6);
    const to = Math.floor((shift + bytes.length) * 8 / 6);
    fragments.push(encoded.slice(from, to));
  }
  return fragments;
}

interface Trigger {
  patterns: Uint8Array[];
  /** `pause`: pass the bytes on, then fire; `hold`: keep them back. */
  mode: "pause" | "hold";
  fire: () => void;
}

/** What {@linkcode FaultProxy.holdOnce} gives: the held request's fate. */
export interface HeldRequest {
  /** Whether the marker was seen and its bytes are held back. */
  readonly held: boolean;
  /**
   * Sends the held bytes to the server, late, then closes that
   * connection; resolves once the server has had them.
   */
  deliver(): Promise<void>;
}

/** A loopback TCP proxy to one port, able to lose the server's answers. */
export class FaultProxy {
  /** The port clients connect to. */
  readonly port: number;
  readonly #listener: Deno.TcpListener;
  readonly #target: number;
  readonly #conns = new Set<Deno.Conn>();
  #trigger?: Trigger;
  #dropping = false;
  #holds: { released: Promise<void>; delivered: () => void }[] = [];

  /**
   * Listens on a free loopback port, forwarding to `target`.
   *
   * @param target The server's port on 127.0.0.1.
   */
  constructor(target: number) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accept();
  }

  /**
   * Arms the proxy once: when a client sends any of `markers`, the bytes
   * are passed on, then `fire` runs, and the server's answers are dropped
   * until {@linkcode FaultProxy.heal}.
   *
   * @param markers Texts to look for in what clients send.
   * @param fire Called once, right after the marked bytes were forwarded.
   */
  armOnce(markers: string[], fire: () => void): void {
    this.#trigger = { patterns: encode(markers), mode: "pause", fire };
  }

  /**
   * Arms the proxy once to delay a request: the bytes that contain any of
   * `markers`, and whatever the client sends after them on that
   * connection, are held back until {@linkcode HeldRequest.deliver},
   * which may come after the client gave up and hung up. That is a
   * request the network (or a slow server) delivers late.
   *
   * @param markers Texts to look for in what clients send.
   * @returns The held request.
   */
  holdOnce(markers: string[]): HeldRequest {
    let held = false;
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    let delivered!: () => void;
    const done = new Promise<void>((resolve) => delivered = resolve);
    this.#trigger = {
      patterns: encode(markers),
      mode: "hold",
      fire: () => held = true,
    };
    this.#holds.push({ released, delivered });
    return {
      get held() {
        return held;
      },
      deliver() {
        release();
        return held ? done : Promise.resolve();
      },
    };
  }

  /** Forgets an armed marker that was never seen. */
  disarm(): void {
    this.#trigger = undefined;
  }

  /** Passes the server's answers again. */
  heal(): void {
    this.#dropping = false;
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) this.#serve(client);
    } catch { /* closed */ }
  }

  async #serve(client: Deno.Conn): Promise<void> {
    this.#conns.add(client);
    let server: Deno.Conn;
    try {
      server = await Deno.connect({
        hostname: "127.0.0.1",
        port: this.#target,
      });
    } catch {
      this.#close(client);
      return;
    }
    this.#conns.add(server);
    const longest = () =>
      Math.max(0, ...(this.#trigger?.patterns ?? []).map((p) => p.length));
    let hold: { released: Promise<void>; delivered: () => void } | undefined;
    const kept: Uint8Array[] = [];
    const upstream = async () => {
      let tail = new Uint8Array(0);
      for await (const chunk of client.readable) {
        if (hold) {
          kept.push(chunk);
          continue;
        }
        const trigger = this.#trigger;
        let seen = false;
        if (trigger) {
          const window = new Uint8Array(tail.length + chunk.length);
          window.set(tail);
          window.set(chunk, tail.length);
          seen = trigger.patterns.some((p) => indexOf(window, p) >= 0);
          tail = seen
            ? new Uint8Array(0)
            : window.slice(Math.max(0, window.length - longest()));
        }
        if (seen && trigger!.mode === "hold") {
          this.#trigger = undefined;
          hold = this.#holds.shift();
          kept.push(chunk);
          trigger!.fire();
          continue;
        }
        await writeAll(server, chunk);
        if (seen) {
          this.#trigger = undefined;
          this.#dropping = true;
          trigger!.fire();
        }
      }
      if (!hold) return;
      // The client hung up; its request arrives now, before the FIN.
      await hold.released;
      for (const chunk of kept) await writeAll(server, chunk);
      try {
        (server as Deno.TcpConn).closeWrite();
      } catch { /* closed */ }
      await Promise.race([drained, delay(2000)]);
      hold.delivered();
    };
    const downstream = async () => {
      for await (const chunk of server.readable) {
        if (this.#dropping || hold) continue;
        try {
          await writeAll(client, chunk);
        } catch { /* the client is gone; keep draining */ }
      }
    };
    const drained = downstream().catch(() => {});
    const up = upstream().catch(() => {});
    await Promise.race([up, drained]);
    // A held request waits for its late delivery.
    if (hold) await up;
    this.#close(client);
    this.#close(server);
  }

  #close(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    try {
      conn.close();
    } catch { /* closed */ }
  }

  /** Stops listening and closes every connection. */
  close(): void {
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const conn of [...this.#conns]) this.#close(conn);
  }

  /** Closes the proxy at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function encode(markers: string[]): Uint8Array[] {
  const encoder = new TextEncoder();
  return markers.map((marker) => encoder.encode(marker));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
  }
}
