/**
 * Parent locks (`hierarchy = /`): conflicts both ways between a lock and
 * the locks under it, on SQLite, through a lock server (the `http`
 * backend), on DynamoDB (dynalite) and on Redis; through the library for
 * the races and through the CLI for the lines a user reads.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CliHome, repoPath, sleep } from "./helpers.ts";
import { parseConfig } from "../lib/composition/config.ts";
import { Stormlock } from "../lib/composition/stormlock.ts";
import {
  ancestors,
  HierarchyConflictError,
  HierarchyLock,
  hierarchyOf,
  intentName,
} from "../lib/composition/hierarchy.ts";
import { holdersOf } from "../lib/composition/holders.ts";
import { bookkeeping } from "../lib/kit/views.ts";
import { ConfigError, LockHeldError } from "../lib/kit/errors.ts";
import { isBookkeeping } from "../lib/kit/reserved.ts";
import { serveStatus } from "../lib/apps/serve/server.ts";

const unique = () => crypto.randomUUID().replaceAll("-", "").slice(0, 12);
const folder = Deno.makeTempDirSync({ prefix: "stormlock-hierarchy-" });

/** A lock server over SQLite, for the `http` store; lives with the module. */
const TOKEN = `shared-${crypto.randomUUID()}`;
const tokenFile = join(folder, "token");
Deno.writeTextFileSync(tokenFile, `${TOKEN}\n`);
const server = serveStatus(
  new Stormlock(
    parseConfig(
      `[default]\nbackend = sqlite\n[backend.sqlite]\npath = ${
        join(folder, "server.db")
      }\n`,
    ),
    { warn() {} },
  ),
  {
    listen: "127.0.0.1:0",
    token: TOKEN,
    allowBreak: true,
    pollMs: 100,
    rate: { burst: 100_000, perSecond: 100_000 },
  },
);

const dynamodb = Deno.env.get("STORMLOCK_TEST_DYNAMODB_ENDPOINT");
const redis = Deno.env.get("STORMLOCK_TEST_REDIS_URL");

/** Each store's config with parent locks on. */
const STORES: Record<string, () => string> = {
  // A DynamoDB (dynalite) when scripts/test.sh runs one: a table each.
  ...dynamodb
    ? {
      dynamodb: () =>
        `[default]\nbackend = dynamodb\nhierarchy = /\n[backend.dynamodb]\nendpoint = ${dynamodb}\nregion = us-east-1\naccess_key_id = AKIDDUMMY\nsecret_access_key = dummy-secret\ntable = stormlock-h-${unique()}\ncreate_table = true\ntimeout = 10s\n`,
    }
    : {},
  ...redis
    ? {
      redis: () =>
        `[default]\nbackend = redis\nhierarchy = /\n[backend.redis]\nurl = ${redis}\nprefix = h${unique()}:\n`,
    }
    : {},
  sqlite: () =>
    `[default]\nbackend = sqlite\nhierarchy = /\n[backend.sqlite]\npath = ${
      join(folder, `${unique()}.db`)
    }\n`,
  http: () =>
    `[default]\nbackend = http\nhierarchy = /\n[backend.http]\nurl = ${server.url}\ntoken_file = ${tokenFile}\ntimeout = 10s\n`,
};

function open(text: string, principal = "ann@host"): Stormlock {
  return new Stormlock(
    parseConfig(
      text.replace("[default]\n", `[default]\nprincipal = ${principal}\n`),
    ),
    { warn() {} },
  );
}

/** Whether `work` is refused by a hold above or below, on `blocking`. */
async function refusedBy(
  work: Promise<unknown>,
  blocking: string,
): Promise<HierarchyConflictError> {
  const error = await work.then(() => undefined, (e) => e);
  assert.ok(
    error instanceof HierarchyConflictError,
    `expected a refusal by "${blocking}", got ${error}`,
  );
  assert.equal(error.blocking, blocking);
  return error;
}

/** The live intention holds of every name in `names`. */
async function intentHolds(
  locks: Stormlock,
  names: string[],
): Promise<string[]> {
  const store = bookkeeping(
    await locks.backend(
      locks.config.sections.default.backend ?? "sqlite",
    ),
  );
  const found: string[] = [];
  for (const name of names) {
    for (const lease of await holdersOf(store, intentName(name))) {
      found.push(`${name} ${lease.id}`);
    }
  }
  return found;
}

Deno.test("hierarchy: the separator from [default], ancestors, and reserved intention names", () => {
  assert.equal(hierarchyOf(parseConfig("[default]\nhierarchy = /\n")), "/");
  assert.equal(hierarchyOf(parseConfig("[default]\nhierarchy = :\n")), ":");
  assert.equal(hierarchyOf(parseConfig("[default]\nttl = 1h\n")), undefined);
  assert.throws(
    () => hierarchyOf(parseConfig("[default]\nhierarchy = yes\n")),
    (e: unknown) =>
      e instanceof ConfigError &&
      /\[default\] hierarchy: "yes"/.test(e.message),
  );
  assert.throws(
    () => hierarchyOf(parseConfig("[default]\nhierarchy =\n")),
    ConfigError,
  );
  assert.deepEqual(ancestors("prod/db/main", "/"), ["prod", "prod/db"]);
  assert.deepEqual(ancestors("prod", "/"), []);
  assert.deepEqual(ancestors("/a//b/", "/"), ["/a", "/a//b"]);
  assert.ok(isBookkeeping(intentName("prod/db")));
  assert.ok(!isBookkeeping("prod/db"));
});

Deno.test("hierarchy: off by default, so prod and prod/db are two flat locks", async () => {
  const text = STORES.sqlite().replace("hierarchy = /\n", "");
  await using locks = open(text);
  const parent = await locks.lock("prod");
  assert.ok(!(parent instanceof HierarchyLock));
  const child = await locks.lock("prod/db");
  const a = await parent.acquire(60);
  const b = await child.acquire(60);
  assert.notEqual(a.id, b.id);
  await parent.release(a.id);
  await child.release(b.id);
});

for (const [store, config] of Object.entries(STORES)) {
  Deno.test(`hierarchy on ${store}: parent and child conflict both ways, siblings coexist, and release leaves nothing`, async () => {
    const text = config();
    const top = `p${unique()}`;
    await using ann = open(text, "ann@host");
    await using bob = open(text, "bob@host");
    const child = await ann.lock(`${top}/db`);
    const childLease = await child.acquire(60);
    assert.equal(childLease.resource, `${top}/db`, "the lease is the child's");

    // A child blocks an exclusive parent, naming the child and its holder.
    const parent = await bob.lock(top);
    const refusal = await refusedBy(parent.acquire(60), `${top}/db`);
    assert.equal(refusal.holder.principal, "ann@host");
    assert.match(
      refusal.message,
      new RegExp(`^"${top}" is held under "${top}/db" by ann@host since `),
    );
    assert.equal(await (await bob.lock(top)).current(), null, "rolled back");
    // A sibling and a grandchild coexist with it; so does a shared parent.
    const sibling = await bob.lock(`${top}/web`);
    const siblingLease = await sibling.acquire(60);
    const grandchild = await bob.lock(`${top}/web2/main`);
    const grandchildLease = await grandchild.acquire(60);
    const shared = await parent.acquire(60, { shared: true });
    await parent.release(shared.id);
    // Slots on a parent exclude the holds under it, as exclusive does.
    await refusedBy(parent.acquire(60, { slots: 2 }), `${top}/db`);
    await sibling.release(siblingLease.id);

    // A grandchild blocks its grandparent.
    await child.release(childLease.id);
    await refusedBy(parent.acquire(60), `${top}/web2/main`);
    await grandchild.release(grandchildLease.id);

    // An exclusive parent blocks children and grandchildren.
    const parentLease = await parent.acquire(60);
    assert.ok(await parent.isHeld(parentLease.id));
    const blocked = await refusedBy(child.acquire(60), top);
    assert.match(
      blocked.message,
      new RegExp(`^"${top}/db" is under "${top}", held by bob@host since `),
    );
    await refusedBy((await ann.lock(`${top}/a/b`)).acquire(60), top);
    await refusedBy(child.acquire(60, { shared: true }), top);
    const same = await (await ann.lock(top)).acquire(60).catch((e) => e);
    assert.ok(
      same instanceof LockHeldError &&
        !(same instanceof HierarchyConflictError),
    );
    assert.equal(same.holder.resource, top);
    assert.equal((await parent.renew(parentLease.id, 120)).resource, top);
    await parent.release(parentLease.id);

    // Nothing is left: no intention hold, nothing in list.
    assert.deepEqual(
      await intentHolds(ann, [top, `${top}/db`, `${top}/web`, `${top}/web2`]),
      [],
    );
    const again = await child.acquire(60);
    const listed = await ann.list(top);
    assert.deepEqual(listed.map((l) => l.resource), [`${top}/db`]);
    await child.release(again.id);
  });

  Deno.test(`hierarchy on ${store}: 20 racers mixing an exclusive parent and children: the parent never overlaps a child`, async () => {
    const text = config();
    const top = `r${unique()}`;
    await using locks = open(text);
    let parentHolds = 0;
    let childHolds = 0;
    let overlaps = 0;
    let parentWins = 0;
    let childWins = 0;
    const racer = async (i: number) => {
      const isParent = i % 4 === 0;
      const lock = await locks.lock(isParent ? top : `${top}/x${i}`);
      const lease = await lock.acquire(30, { wait: "3m" });
      if (isParent) {
        parentHolds++;
        parentWins++;
        if (childHolds > 0 || parentHolds > 1) overlaps++;
      } else {
        childHolds++;
        childWins++;
        if (parentHolds > 0) overlaps++;
      }
      await sleep(10);
      if (isParent) parentHolds--;
      else childHolds--;
      await lock.release(lease.id);
    };
    await Promise.all(Array.from({ length: 20 }, (_, i) => racer(i)));
    assert.equal(overlaps, 0, "a parent hold overlapped another hold under it");
    assert.equal(parentWins, 5);
    assert.equal(childWins, 15);

    // Without waiting: either one parent wins alone, or children only.
    const tries = await Promise.allSettled(
      Array.from({ length: 20 }, async (_, i) => {
        const name = i % 4 === 0 ? top : `${top}/x${i}`;
        const lease = await (await locks.lock(name)).acquire(60);
        return { name, lease };
      }),
    );
    const won = tries.flatMap((t) => t.status === "fulfilled" ? [t.value] : []);
    for (const t of tries) {
      if (t.status === "rejected") {
        assert.ok(t.reason instanceof LockHeldError, String(t.reason));
      }
    }
    const parents = won.filter((w) => w.name === top);
    assert.ok(won.length > 0);
    assert.ok(
      parents.length === 0 || (parents.length === 1 && won.length === 1),
      `winners: ${won.map((w) => w.name).join(", ")}`,
    );
    for (const w of won) await (await locks.lock(w.name)).release(w.lease.id);
    assert.deepEqual(await intentHolds(locks, [top]), []);
  });
}

Deno.test("hierarchy on sqlite: a waiting parent is not starved by a stream of children", async () => {
  await using locks = open(STORES.sqlite());
  const first = await (await locks.lock("prod/a")).acquire(60);
  const parent = await locks.lock("prod");
  let parentLease: { id: string } | undefined;
  const waiting = parent.acquire(60, { wait: "2m" }).then((lease) =>
    parentLease = lease
  );
  // Once the parent waits for prod's intention, a new child queues behind.
  const intent = await locks.lock("prod/b");
  let refusal: unknown;
  for (let i = 0; i < 200 && refusal === undefined; i++) {
    await sleep(50);
    const tried = await intent.acquire(60).catch((e) => e);
    if (tried instanceof HierarchyConflictError) refusal = tried;
    else if (!(tried instanceof Error)) await intent.release(tried.id);
  }
  assert.ok(refusal instanceof HierarchyConflictError, String(refusal));
  assert.ok(refusal.queued, refusal.message);
  assert.match(
    refusal.message,
    /^"prod\/b" is free, but 1 waiting for "prod" or a lock under it got there first/,
  );
  assert.equal(parentLease, undefined);
  await (await locks.lock("prod/a")).release(first.id);
  await waiting;
  assert.ok(await parent.isHeld(parentLease!.id));
  await parent.release(parentLease!.id);
});

Deno.test("hierarchy via the CLI: the refusal is one line naming holder and resource, exit 2; list hides intention holds", async () => {
  using home = new CliHome();
  const config = home.write(
    "c.cfg",
    `[default]\nhierarchy = /\n[backend.sqlite]\npath = ${home.home}/.local/state/stormlock/h.db\n`,
  );
  const as = (user: string, ...args: string[]) =>
    home.run(["-c", config, ...args], { USER: user });
  const child = await as("ann", "acquire", "-r", "db patch", "prod/db");
  assert.equal(child.code, 0, child.stderr);
  const parent = await as("bob", "acquire", "prod");
  assert.equal(parent.code, 2);
  assert.equal(parent.stdout, "");
  assert.equal(parent.stderr.trim().split("\n").length, 1, parent.stderr);
  assert.match(
    parent.stderr,
    /^stormlock: "prod" is held under "prod\/db" by ann@\S+ since .*stormlock break prod\/db/,
  );
  const waited = await as("bob", "acquire", "--wait", "1s", "prod");
  assert.equal(waited.code, 2);
  assert.match(
    waited.stderr,
    /Gave up after waiting 1s: "prod" is held under "prod\/db" by ann@/,
  );
  const grandchild = await as("bob", "acquire", "prod/db/main");
  assert.equal(grandchild.code, 2);
  assert.match(
    grandchild.stderr,
    /^stormlock: "prod\/db\/main" is under "prod\/db", held by ann@/,
  );
  // ann asking for the parent is not told she holds "prod".
  const own = await as("ann", "acquire", "prod");
  assert.equal(own.code, 2);
  assert.doesNotMatch(own.stderr, /you already hold it/);
  const sibling = await as("bob", "run", "prod/web", "--", "true");
  assert.equal(sibling.code, 0, sibling.stderr);

  const list = await as("ann", "list", "--json");
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    JSON.parse(list.stdout).map((l: { resource: string }) => l.resource),
    ["prod/db"],
  );
  const table = await as("ann", "list");
  assert.ok(!table.stdout.includes("\u001f"), table.stdout);
  assert.doesNotMatch(table.stdout, /intent|\\x1f/);
  const current = await as("ann", "current", "--json", "prod/db");
  assert.equal(JSON.parse(current.stdout).reason, "db patch");
  // A break ends the child's intention holds too: the parent is free.
  const broken = await as("bob", "break", "-y", "-r", "job died", "prod/db");
  assert.equal(broken.code, 0, broken.stderr);
  const now = await as("bob", "acquire", "--json", "prod");
  assert.equal(now.code, 0, now.stderr);
  assert.equal(JSON.parse(now.stdout).resource, "prod");
  assert.equal(JSON.parse(now.stdout).members, undefined);
});

Deno.test("hierarchy via the CLI: a bad value is one line, exit 78; a store without the holders capability is one line, exit 78", async () => {
  using home = new CliHome();
  const bad = home.write("bad.cfg", "[default]\nhierarchy = yes\n");
  const result = await home.run(["-c", bad, "acquire", "prod"]);
  assert.equal(result.code, 78, result.stderr);
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  assert.match(
    result.stderr,
    /\[default\] hierarchy: "yes" is not a separator/,
  );
  const good = home.write("good.cfg", "[default]\nhierarchy = /\n");
  const quiet = await home.run(["-c", good, "list"]);
  assert.doesNotMatch(quiet.stderr, /unknown key/);

  home.write(
    "work/minimal-plugin.js",
    Deno.readTextFileSync(repoPath("tests", "fixtures", "minimal-plugin.js")),
  );
  const plugin = home.write(
    "work/plugin.cfg",
    "[default]\nbackend = memory\nhierarchy = /\n\n[backend.memory]\nmodule = ./minimal-plugin.js\n",
  );
  const refused = await home.run(["-c", plugin, "acquire", "prod/db"]);
  assert.equal(refused.code, 78, refused.stderr);
  assert.equal(refused.stderr.trim().split("\n").length, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /Parent locks \(hierarchy = \/ in \[default\]\) need shared holds, and backend "memory" does not support them/,
  );
});

Deno.test("hierarchy on sqlite: SIGKILL of a child acquire mid-way leaves nothing held after the TTL", async () => {
  using home = new CliHome();
  const config = home.write(
    "c.cfg",
    `[default]\nhierarchy = /\n[backend.sqlite]\npath = ${home.home}/.local/state/stormlock/k.db\n`,
  );
  await using locks = new Stormlock(
    parseConfig(Deno.readTextFileSync(config), config),
    { warn: () => {} },
  );
  // prod/db is held, so a second acquire of it takes prod's intention
  // (shared), then waits for prod/db.
  const blocker = await (await locks.lock("prod/db")).acquire(3600);
  const child = new Deno.Command("sh", {
    args: [
      repoPath("scripts", "stormlock"),
      "-c",
      config,
      "acquire",
      "--ttl",
      "3s",
      "--wait",
      "5m",
      "prod/db",
    ],
    cwd: home.cwd,
    clearEnv: true,
    env: {
      ...home.env,
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
    },
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  const others = async () =>
    (await intentHolds(locks, ["prod"])).filter((held) =>
      !held.endsWith(blocker.id)
    );
  while ((await others()).length === 0) {
    assert.ok(!exited, "the acquire ended before taking prod's intention");
    await sleep(100);
  }
  child.kill("SIGKILL");
  await child.status;
  await sleep(3000 + 1500);
  assert.deepEqual(await others(), [], "its intention hold lapsed");
  const lock = await locks.lock("prod/db");
  assert.equal((await lock.current())?.id, blocker.id);
  await lock.release(blocker.id);
  const parent = await (await locks.lock("prod")).acquire(60);
  assert.equal(parent.resource, "prod", "nothing is left to block the parent");
});
