/**
 * The `http` backend against real `stormlock serve` instances: the whole
 * backend contract through a server over SQLite and over PostgreSQL, two
 * servers over one PostgreSQL acting as one, and failover between urls.
 */
import assert from "assert";
import { join } from "node:path";
import {
  testBackendContract,
  testUnavailableContract,
} from "../lib/testing/mod.ts";
import { LockHeldError, openBackend, parseConfig, Stormlock } from "../mod.ts";
import type { Backend, BackendOptions, Lease } from "../mod.ts";
import { serveStatus, type StatusServer } from "../lib/apps/serve/server.ts";
import { closedPort, uniqueResource } from "./helpers.ts";

const SHARED = `shared-${crypto.randomUUID()}`;
const folder = Deno.makeTempDirSync({ prefix: "stormlock-http-" });
const tokenFile = join(folder, "token");
Deno.writeTextFileSync(tokenFile, `${SHARED}\n`);

/** A serve instance over a store described by a config text. */
function startServer(configText: string): {
  url: string;
  server: StatusServer;
  locks: Stormlock;
} {
  const locks = new Stormlock(parseConfig(configText), { warn() {} });
  const server = serveStatus(locks, {
    listen: "127.0.0.1:0",
    token: SHARED,
    allowBreak: true,
    pollMs: 100,
    rate: { burst: 100_000, perSecond: 100_000 },
  });
  return { url: server.url, server, locks };
}

function sqliteServer(extra = "") {
  const path = join(folder, `${crypto.randomUUID()}.db`);
  return startServer(
    `[default]\nbackend = sqlite\n[backend.sqlite]\npath = ${path}\n${extra}`,
  );
}

function openHttp(url: string, extra: BackendOptions = {}): Promise<Backend> {
  return openBackend(
    { url, token_file: tokenFile, timeout: "5s", ...extra },
    { name: "http", section: "backend.http" },
  );
}

// Servers live as long as the test module; Deno ends them with it.
const overSqlite = sqliteServer();
const overSqliteHistory3 = sqliteServer("history = 3\n");

/** Opens the http backend; `history` picks the server whose store keeps 3. */
function factory(main: string, history3: string) {
  return (extra: BackendOptions = {}) => {
    const { history, ...rest } = extra;
    return openHttp(history === "3" ? history3 : main, rest);
  };
}

testBackendContract(
  "http over sqlite",
  factory(overSqlite.url, overSqliteHistory3.url),
);

testUnavailableContract(
  "http",
  (host, port) => openHttp(`http://${host}:${port}`, { timeout: "1s" }),
  // renew, release and break say "no answer in time", not the bound.
  { secret: SHARED, silent: /within 1s|no answer in time/ },
);

const postgresUrl = Deno.env.get("STORMLOCK_TEST_POSTGRES_URL");
if (postgresUrl) {
  const table = () => `stormlock_http_${crypto.randomUUID().slice(0, 8)}`;
  const postgresConfig = (name: string, extra = "") =>
    `[default]\nbackend = postgres\n[backend.postgres]\nurl = ${postgresUrl}\ntable = ${name}\ncreate_table = true\n${extra}`;
  const shared = table();
  const first = startServer(postgresConfig(shared));
  const second = startServer(postgresConfig(shared));
  const history3 = startServer(postgresConfig(table(), "history = 3\n"));

  testBackendContract("http over postgres", factory(first.url, history3.url));

  Deno.test({
    name:
      "http: 20 racers split across two servers over one postgres: exactly one wins",
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const racers = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => openHttp(i % 2 === 0 ? first.url : second.url),
        ),
      );
      try {
        for (let round = 0; round < 3; round++) {
          const resource = uniqueResource(`split${round}`);
          const results = await Promise.allSettled(
            racers.map((racer, i) => racer.acquire(resource, `racer${i}`, 60)),
          );
          const winners = results.filter((r) => r.status === "fulfilled");
          assert.equal(winners.length, 1, `round ${round}: one winner`);
          const winner = (winners[0] as PromiseFulfilledResult<Lease>).value;
          for (const result of results) {
            if (result.status === "rejected") {
              assert.ok(result.reason instanceof LockHeldError, result.reason);
              assert.equal(result.reason.holder.id, winner.id);
            }
          }
          // Each server sees the lease the other's client took.
          for (const racer of [racers[0], racers[1]]) {
            assert.equal((await racer.current(resource))?.id, winner.id);
          }
        }
      } finally {
        await Promise.all(racers.map((racer) => racer.close()));
      }
    },
  });

  Deno.test({
    name:
      "http: a client whose first url is down fails over to the second, and a lease taken on one is released on the other",
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dead = `http://127.0.0.1:${closedPort()}`;
      const client = await openHttp(`${dead}, ${second.url}`);
      const direct = await openHttp(first.url);
      try {
        const resource = uniqueResource("failover");
        const lease = await client.acquire(resource, "ann@host", 60);
        assert.equal((await direct.current(resource))?.id, lease.id);
        await direct.release(resource, lease.id);
        assert.equal(await client.current(resource), null);
      } finally {
        await client.close();
        await direct.close();
      }
    },
  });
}

Deno.test("http: a plain-http url to another host is refused unless allowed, and a token in the url is refused", async () => {
  await assert.rejects(
    openHttp("http://locks.example.com"),
    /plain http to another host.*allow_plain_http/,
  );
  await assert.rejects(
    openHttp("https://user:pw@locks.example.com"),
    /not in the URL/,
  );
  const allowed = await openHttp("http://locks.example.com", {
    allow_plain_http: "true",
  });
  await allowed.close();
});
