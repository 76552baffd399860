import Redis from "ioredis";
const l = Deno.listen({hostname: "127.0.0.1", port: 0});
const bhPort = (l.addr as Deno.NetAddr).port;
const held: Deno.Conn[] = [];
(async () => { for await (const c of l) held.push(c); })();
async function tryit(label: string, opts: Record<string, unknown>) {
  const c = new Redis({ lazyConnect: true, connectTimeout: 1000, commandTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, disableClientInfo: true, ...opts });
  const errs: string[] = [];
  c.on("error", (e) => errs.push(String(e?.message)));
  const t = Date.now();
  try { await c.connect(); console.log(label, "connected", await c.ping()); }
  catch (e) { console.log(label, "fail", Date.now() - t, (e as Error).message, errs, c.status); }
  c.disconnect();
}
await tryit("ok", { port: 16399, password: "sekret" });
await tryit("wrongpw", { port: 16399, password: "nope" });
await tryit("nopw", { port: 16399 });
await tryit("refused", { port: 1 });
await tryit("blackhole-accept", { port: bhPort });
await tryit("10.255.255.1", { host: "10.255.255.1", port: 6379 });
l.close(); held.forEach((c) => c.close());
