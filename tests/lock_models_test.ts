/**
 * Lock models that need no new store primitive: freeze windows (config
 * and one-off) and lock sets, on SQLite and on Redis, through the CLI as a
 * user runs it and through the library for the races.
 */
import assert from "assert";
import { CliHome, repoPath, sleep } from "./helpers.ts";
import { parseConfig } from "../lib/composition/config.ts";
import { Stormlock } from "../lib/composition/stormlock.ts";
import { openLockSet } from "../lib/composition/lockset.ts";
import {
  checkFrozen,
  freezeHistory,
  freezeRules,
  freezeStore,
  FrozenError,
  ruleWindows,
} from "../lib/composition/freeze.ts";
import { ConfigError, LockHeldError } from "../lib/kit/errors.ts";

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`set ${name} or run scripts/test.sh`);
  return value;
}

const unique = () => crypto.randomUUID().replaceAll("-", "").slice(0, 12);

/** Each store's config, on a prefix of its own. */
const STORES: Record<string, (home: CliHome) => string> = {
  sqlite: (home) =>
    `[default]\nbackend = sqlite\n[backend.sqlite]\npath = ${home.home}/.local/state/stormlock/models.db\n`,
  redis: () =>
    `[default]\nbackend = redis\n[backend.redis]\nurl = ${
      env("STORMLOCK_TEST_REDIS_URL")
    }\nprefix = models${unique()}:\n`,
};

// --- Freeze windows -------------------------------------------------------

Deno.test("freeze: a weekly window in Europe/Berlin starts at 18:00 local on both sides of the October DST change", async () => {
  const [rule] = freezeRules(parseConfig(
    "[freeze.weekend]\nresources = prod/*\ncron = 0 18 * * FRI\nduration = 62h\nzone = Europe/Berlin\nreason = weekend freeze\n",
  ));
  // Saturday 24 October 2026, summer time (UTC+2): inside the window that
  // began on Friday 18:00 CEST = 16:00 UTC.
  const saturday = new Date("2026-10-24T12:00:00Z");
  const windows = await ruleWindows([rule], saturday);
  const active = windows.find((w) => w.start <= saturday)!;
  assert.equal(active.start.toISOString(), "2026-10-23T16:00:00.000Z");
  assert.equal(active.end.toISOString(), "2026-10-26T06:00:00.000Z");
  assert.equal(active.reason, "weekend freeze");
  // The next Friday is in winter time (UTC+1): 18:00 CET = 17:00 UTC.
  const upcoming = windows.find((w) => w.start > saturday)!;
  assert.equal(upcoming.start.toISOString(), "2026-10-30T17:00:00.000Z");
  // After the window, on Monday 07:00 UTC, nothing is active.
  const monday = new Date("2026-10-26T07:00:00Z");
  assert.equal(checkFrozen(windows, "prod/db", undefined, monday), undefined);
  assert.throws(
    () => checkFrozen(windows, "prod/db", undefined, saturday),
    (error: unknown) =>
      error instanceof FrozenError && /freeze window "weekend"/.test(
        error.message,
      ) && /weekend freeze/.test(error.message),
  );
  assert.equal(
    checkFrozen(windows, "staging/db", undefined, saturday),
    undefined,
    "a resource the pattern doesn't match is not frozen",
  );
  assert.match(
    checkFrozen(windows, "prod/db", "hotfix", saturday)!,
    /^freeze override \(weekend\): hotfix$/,
  );
});

Deno.test("freeze: a spring-forward day keeps 02:30 Berlin windows real (01:30 UTC before, 00:30 UTC after)", async () => {
  const [rule] = freezeRules(parseConfig(
    "[freeze.nightly]\nresources = db\ncron = 30 2 * * *\nduration = 30m\nzone = Europe/Berlin\n",
  ));
  const before = await ruleWindows([rule], new Date("2026-03-28T01:40:00Z"));
  assert.equal(before[0].start.toISOString(), "2026-03-28T01:30:00.000Z");
  const after = await ruleWindows([rule], new Date("2026-03-30T00:40:00Z"));
  assert.equal(after[0].start.toISOString(), "2026-03-30T00:30:00.000Z");
});

Deno.test("freeze: a bad [freeze.NAME] value is one line and exit 78", async () => {
  using home = new CliHome();
  const cases: [string, RegExp][] = [
    [
      "resources = prod/*\ncron = 0 18 * * FRI\n",
      /\[freeze\.w\] duration: missing/,
    ],
    [
      "cron = 0 18 * * FRI\nduration = 1h\n",
      /\[freeze\.w\] resources: missing/,
    ],
    [
      "resources = a\ncron = 0 18 * FRI\nduration = 1h\n",
      /\[freeze\.w\] cron: .* has 4 fields/,
    ],
    [
      "resources = a\ncron = 0 18 * * FRI\nduration = 1h\nzone = Mars/Olympus\n",
      /\[freeze\.w\] zone: "Mars\/Olympus" is not a time zone/,
    ],
    [
      "resources = a\ncron = 0 18 * * FRI\nduration = soon\n",
      /\[freeze\.w\] duration: /,
    ],
    [
      "resources = a\ncron = 0 18 * * FRI\nduration = 1h\nzones = UTC\n",
      /\[freeze\.w\] zones: unknown key/,
    ],
  ];
  for (const [body, pattern] of cases) {
    assert.throws(
      () => freezeRules(parseConfig(`[freeze.w]\n${body}`)),
      (error: unknown) =>
        error instanceof ConfigError && pattern.test(error.message),
      body,
    );
  }
  const config = home.write("bad.cfg", `[freeze.w]\n${cases[0][0]}`);
  const result = await home.run(["-c", config, "acquire", "a"]);
  assert.equal(result.code, 78, result.stderr);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
  assert.match(result.stderr, /^stormlock: .*\[freeze\.w\] duration: missing/);
});

Deno.test("freeze: a config window refuses acquire and run with exit 2, and an override is recorded in history", async () => {
  using home = new CliHome();
  const config = home.write(
    "freeze.cfg",
    "[freeze.always]\nresources = prod/* db\ncron = * * * * *\nduration = 5m\nzone = Europe/Berlin\nreason = change freeze\n",
  );
  const refused = await home.run(["-c", config, "acquire", "prod/db"]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stdout, "");
  assert.match(
    refused.stderr,
    /^stormlock: "prod\/db" is frozen by freeze window "always" \(change freeze\) until \d\d:\d\d \([+-]\d\d:\d\d\), in \d+m; to go ahead anyway: --override-freeze --reason TEXT\n$/,
  );
  const ran = await home.run(["-c", config, "run", "db", "--", "true"]);
  assert.equal(ran.code, 2, ran.stderr);
  assert.match(ran.stderr, /frozen by freeze window "always"/);
  assert.equal(
    (await home.run(["-c", config, "acquire", "staging"])).code,
    0,
    "other resources are not frozen",
  );
  const noReason = await home.run([
    "-c",
    config,
    "acquire",
    "--override-freeze",
    "prod/db",
  ]);
  assert.equal(noReason.code, 64, noReason.stderr);
  assert.match(noReason.stderr, /--override-freeze needs --reason/);
  const overridden = await home.run([
    "-c",
    config,
    "acquire",
    "--override-freeze",
    "--reason",
    "hotfix INC-42",
    "prod/db",
  ]);
  assert.equal(overridden.code, 0, overridden.stderr);
  const history = await home.run([
    "-c",
    config,
    "history",
    "--json",
    "prod/db",
  ]);
  const [event] = JSON.parse(history.stdout);
  assert.equal(event.kind, "acquired");
  assert.equal(event.id, overridden.stdout.trim());
  assert.equal(event.reason, "freeze override (always): hotfix INC-42");
  const ranAnyway = await home.run([
    "-c",
    config,
    "run",
    "--override-freeze",
    "-r",
    "hotfix INC-43",
    "db",
    "--",
    "sh",
    "-c",
    'echo "$STORMLOCK_LEASE_ID"',
  ]);
  assert.equal(ranAnyway.code, 0, ranAnyway.stderr);
  const ranEvent = JSON.parse(
    (await home.run(["-c", config, "history", "--json", "db"])).stdout,
  ).find((e: { kind: string }) => e.kind === "acquired");
  assert.equal(ranEvent.id, ranAnyway.stdout.trim());
  assert.equal(ranEvent.reason, "freeze override (always): hotfix INC-43");
  const shown = await home.run(["-c", config, "freezes", "--json", "prod/x"]);
  assert.equal(shown.code, 1, "freezes exits 1 for a frozen resource");
  const { active } = JSON.parse(shown.stdout);
  assert.equal(active[0].name, "always");
  assert.equal(active[0].reason, "change freeze");
  const listed = await home.run(["-c", config, "list"]);
  assert.match(listed.stderr, /Frozen: freeze window "always" on prod\/\*, db/);
});

for (const [store, section] of Object.entries(STORES)) {
  Deno.test(`freeze: a one-off freeze via the CLI on ${store}: refuses, lists, records, unfreezes`, async () => {
    using home = new CliHome();
    const config = home.write("c.cfg", section(home));
    const cli = (...args: string[]) => home.run(["-c", config, ...args]);
    const pattern = `app${unique()}/*`;
    const resource = pattern.replace("*", "web");
    const frozen = await cli(
      "freeze",
      pattern,
      "--until",
      "+2h",
      "--reason",
      "release 4.2",
    );
    assert.equal(frozen.code, 0, frozen.stderr);
    const refused = await cli("acquire", resource);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(
      refused.stderr,
      /is frozen by a freeze of "app\w+\/\*" by tester@\S+ \(release 4\.2\) until .*, in 2h/,
    );
    const again = await cli("freeze", pattern, "--until", "+1h", "-r", "x");
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /is frozen already: .*stormlock unfreeze/);
    assert.doesNotMatch(again.stderr, /\\x1f/, "no reserved names shown");
    const later = `later${unique()}`;
    assert.equal(
      (await cli("freeze", later, "--from", "+1h", "--until", "+2h", "-r", "l"))
        .code,
      0,
    );
    assert.equal(
      (await cli("acquire", later)).code,
      0,
      "a freeze that starts later does not refuse yet",
    );
    const shown = JSON.parse((await cli("freezes", "--json")).stdout);
    assert.ok(shown.active.some((w: { name: string }) => w.name === pattern));
    assert.ok(shown.upcoming.some((w: { name: string }) => w.name === later));
    const listed = await cli("list", "--json");
    assert.ok(
      !listed.stdout.includes("freeze"),
      "freeze records are not listed as locks",
    );
    const ended = await cli("unfreeze", pattern, "--reason", "released");
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal((await cli("unfreeze", pattern)).code, 1);
    const taken = await cli("acquire", resource);
    assert.equal(taken.code, 0, taken.stderr);
    await using locks = new Stormlock(
      parseConfig(Deno.readTextFileSync(config), config),
      { warn: () => {} },
    );
    const events = await freezeHistory(await freezeStore(locks), pattern);
    assert.deepEqual(events.map((e) => e.kind), ["broken", "acquired"]);
    assert.equal(events[1].reason, "release 4.2");
    assert.equal(events[0].by?.reason, "released");
  });
}

// --- Lock sets ------------------------------------------------------------

for (const [store, section] of Object.entries(STORES)) {
  Deno.test(`lock sets on ${store}: two overlapping sets, 20 racers each in opposite orders, no deadlock, whole sets only`, async () => {
    using home = new CliHome();
    const config = home.write("c.cfg", section(home));
    await using locks = new Stormlock(
      parseConfig(Deno.readTextFileSync(config), config),
      { warn: () => {} },
    );
    const tag = unique();
    const one = [`a${tag}`, `b${tag}`, `c${tag}`];
    const other = [`c${tag}`, `d${tag}`, `a${tag}`]; // overlaps on a and c
    const owner = new Map<string, string>();
    let overlaps = 0;
    const racer = async (resources: string[], me: string) => {
      const set = await openLockSet(locks, resources);
      const lease = await set.acquire(10, { wait: "2m" });
      for (const resource of resources) {
        if (owner.has(resource)) overlaps++;
        owner.set(resource, me);
      }
      assert.ok(await set.isHeld(lease.id), `${me} holds its whole set`);
      assert.equal(lease.members.length, 3);
      await sleep(5);
      for (const resource of resources) {
        if (owner.get(resource) === me) owner.delete(resource);
      }
      await set.release(lease.id);
    };
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => racer(one, `one${i}`)),
      ...Array.from({ length: 20 }, (_, i) => racer(other, `other${i}`)),
    ]);
    assert.equal(overlaps, 0, "two holders shared a resource");
    for (const resource of [...one, ...other]) {
      assert.equal(await (await locks.lock(resource)).current(), null);
    }

    // Without waiting: each winner holds its whole set, a loser nothing.
    const tries = await Promise.allSettled([
      ...Array.from(
        { length: 20 },
        () => openLockSet(locks, one).then((s) => s.acquire(30)),
      ),
      ...Array.from(
        { length: 20 },
        () => openLockSet(locks, other).then((s) => s.acquire(30)),
      ),
    ]);
    const won = tries.filter((t) => t.status === "fulfilled").map((t) =>
      (t as PromiseFulfilledResult<{ id: string; resource: string }>).value
    );
    for (const t of tries) {
      if (t.status === "rejected") {
        assert.ok(t.reason instanceof LockHeldError, String(t.reason));
      }
    }
    assert.equal(won.length, 1, "overlapping sets: exactly one winner");
    const held = await Promise.all(
      [...new Set([...one, ...other])].map(async (r) =>
        (await (await locks.lock(r)).current())?.id ?? null
      ),
    );
    const winnerSet = won[0].resource.split(" ");
    for (const [i, r] of [...new Set([...one, ...other])].entries()) {
      assert.equal(
        held[i],
        winnerSet.includes(r) ? won[0].id : null,
        `${r}: only the winner's set is held`,
      );
    }
  });
}

Deno.test("lock sets via the CLI: acquire, is-held, renew, release and run take every resource under one id", async () => {
  using home = new CliHome();
  const config = home.write("c.cfg", STORES.sqlite(home));
  const cli = (...args: string[]) => home.run(["-c", config, ...args]);
  const acquired = await cli("acquire", "--json", "dns", "db", "cache");
  assert.equal(acquired.code, 0, acquired.stderr);
  const lease = JSON.parse(acquired.stdout);
  assert.equal(lease.resource, "cache db dns");
  assert.deepEqual(
    lease.members.map((m: { resource: string; id: string }) =>
      `${m.resource} ${m.id === lease.id}`
    ),
    ["cache true", "db true", "dns true"],
  );
  for (const resource of ["db", "cache", "dns"]) {
    const current = await cli("current", "--id-only", resource);
    assert.equal(current.stdout.trim(), lease.id, resource);
  }
  const overlapping = await cli("acquire", "ntp", "dns");
  assert.equal(overlapping.code, 2);
  assert.equal(
    (await cli("current", "ntp")).code,
    1,
    "a refused set leaves nothing held",
  );
  assert.equal((await cli("is-held", "db", "cache", "dns", lease.id)).code, 0);
  assert.equal(
    (await cli("renew", "-t", "2h", "db", "dns", "cache", lease.id))
      .code,
    0,
  );
  assert.equal((await cli("release", "cache", "db", "dns", lease.id)).code, 0);
  assert.equal((await cli("is-held", "db", "cache", "dns", lease.id)).code, 1);
  const ran = await cli(
    "run",
    "db",
    "cache",
    "--",
    "sh",
    "-c",
    'test "$STORMLOCK_RESOURCE" = "cache db"',
  );
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal((await cli("current", "db")).code, 1, "run released the set");
  const twice = await cli("acquire", "db", "db");
  assert.equal(twice.code, 64);
  assert.match(twice.stderr, /"db" is named twice/);
});

for (const [store, section] of Object.entries(STORES)) {
  Deno.test(`lock sets on ${store}: SIGKILL of a set acquire mid-way leaves nothing held after the TTL`, async () => {
    using home = new CliHome();
    const config = home.write("c.cfg", section(home));
    await using locks = new Stormlock(
      parseConfig(Deno.readTextFileSync(config), config),
      { warn: () => {} },
    );
    // z is held by someone else, so the set takes x and y, then waits.
    const blocker = await (await locks.lock("z")).acquire(3600);
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
        "x",
        "y",
        "z",
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
    const x = await locks.lock("x");
    const y = await locks.lock("y");
    let exited = false;
    child.status.then(() => exited = true);
    while (!(await x.current() && await y.current())) {
      assert.ok(!exited, "the set acquire ended before taking x and y");
      await sleep(100);
    }
    const taken = (await y.current())!;
    child.kill("SIGKILL");
    await child.status;
    await sleep(3000 + 1500);
    assert.equal(await x.current(), null, "x lapsed");
    assert.equal(await y.current(), null, "y lapsed");
    assert.equal((await (await locks.lock("z")).current())?.id, blocker.id);
    assert.ok(taken.expires.getTime() - taken.created.getTime() <= 3000);
  });
}
