/**
 * `stormlock watch --json` on every built-in store, through the CLI as a
 * user runs it: it sees acquire, release, break and an expiry that nobody
 * follows with an acquire, in order, and the expiry is recorded. The
 * `http` case watches as a client of a real `stormlock serve`.
 */
import assert from "assert";
import { join } from "node:path";
import { backendTest, CliHome, sleep } from "./helpers.ts";

const test = backendTest("watch");

function env(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`set ${name} or run scripts/test.sh`);
  return value;
}

const unique = () => crypto.randomUUID().replaceAll("-", "").slice(0, 12);

/** Each store's config section, on a table or prefix of its own. */
const STORES: Record<string, () => string> = {
  sqlite: () => "",
  redis: () =>
    `[backend.redis]\nurl = ${
      env("STORMLOCK_TEST_REDIS_URL")
    }\nprefix = watch${unique()}:\n`,
  postgres: () =>
    `[backend.postgres]\nurl = ${
      env("STORMLOCK_TEST_POSTGRES_URL")
    }\ntable = watch_${unique()}\ncreate_table = true\n`,
  etcd: () =>
    `[backend.etcd]\nhosts = ${
      env("STORMLOCK_TEST_ETCD_URL")
    }\nprefix = /watch${unique()}/\n`,
  dynamodb: () =>
    `[backend.dynamodb]\nendpoint = ${
      env("STORMLOCK_TEST_DYNAMODB_ENDPOINT")
    }\nregion = us-east-1\naccess_key_id = AKIDDUMMY\nsecret_access_key = dummy-secret\ntable = watch-${unique()}\ncreate_table = true\n`,
};

/**
 * Starts `stormlock serve` over SQLite in the home, with a named token for
 * ann that may read, acquire and break, and gives its client config.
 */
async function serve(home: CliHome) {
  const tokens = join(home.home, "tokens.json");
  const server = home.write(
    "server.cfg",
    `[default]\nbackend = sqlite\n[serve]\ntokens = ${tokens}\n`,
  );
  const made = await home.run([
    "-c",
    server,
    "token",
    "create",
    "ann",
    "--scopes",
    "read,acquire,break",
  ]);
  assert.equal(made.code, 0, made.stderr);
  const token = made.stdout.trim();
  const child = home.spawn(["-c", server, "serve", "--listen", "127.0.0.1:0"]);
  const url = (await child.stderrMatch(/serving (http:\/\/\S+) \(/))?.[1];
  return {
    url,
    token,
    stderr: () => child.output.stderr,
    async [Symbol.asyncDispose]() {
      const { stderr } = await child.stop();
      assert.ok(!stderr.includes(token), "the token shows in serve's stderr");
    },
  };
}

async function until(check: () => boolean, what: string, tries = 600) {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const [store, section] of Object.entries(STORES)) {
  test(`watch --json on ${store} sees acquire, release, break and expiry in order`, async () => {
    using home = new CliHome();
    home.write(
      ".stormlock.cfg",
      `[default]\nbackend = ${store}\nprincipal = ann@a\n${section()}`,
    );
    await watchesInOrder(home, store, { AWS_EC2_METADATA_DISABLED: "true" });
  });
}

test("watch --json through http sees acquire, release, break and expiry in order, and the server records the expiry", async () => {
  using home = new CliHome();
  await using server = await serve(home);
  assert.ok(server.url, server.stderr());
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = http\n[backend.http]\nurl = ${server.url}\n`,
  );
  const output = await watchesInOrder(home, "http", {
    STORMLOCK_TOKEN: server.token,
  });
  assert.ok(!output.includes(server.token), "the token shows in watch output");
});

/**
 * Runs `watch --json w/` as a user would, does acquire, release, acquire,
 * break and an unfollowed expiry, and checks what it printed and recorded.
 * Gives everything the watch printed.
 */
async function watchesInOrder(
  home: CliHome,
  store: string,
  extra: Record<string, string>,
): Promise<string> {
  {
    const init = await home.run(["init"], extra);
    assert.equal(init.code, 0, init.stderr);
    const resource = `w/${unique()}`;
    const child = home.spawn(["watch", "--json", "w/"], extra);
    const { output } = child;
    const events = () =>
      output.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line))
        .filter((event) => event.resource === resource);
    try {
      await until(() => /watching/i.test(output.stderr), "watch to start");
      const cli = async (args: string[]) => {
        const result = await home.run(args, extra);
        assert.equal(result.code, 0, result.stderr);
        return result.stdout.trim();
      };
      const first = await cli(["acquire", resource]);
      await cli(["release", resource, first]);
      const second = await cli(["acquire", resource]);
      await cli(["break", resource, second, "--reason", "stuck"]);
      const third = await cli(["acquire", resource, "--ttl", "2s"]);
      await until(
        () => events().some((event) => event.kind === "expired"),
        `the expiry on ${store}\n${output.stderr}`,
      );
      assert.deepEqual(events().map((event) => event.kind), [
        "acquired",
        "released",
        "acquired",
        "broken",
        "acquired",
        "expired",
      ]);
      const [expired] = events().slice(-1);
      assert.equal(expired.lease.id, third);
      assert.equal(events()[3].by.reason, "stuck");
      // Nobody acquired after the expiry, yet history has it.
      const history = JSON.parse(
        await cli(["history", resource, "--json", "--limit", "1"]),
      );
      let recorded = history[0];
      for (let i = 0; i < 100 && recorded?.kind !== "expired"; i++) {
        await sleep(100); // etcd deletes an expired key in a sweep
        recorded = JSON.parse(
          await cli(["history", resource, "--json", "--limit", "1"]),
        )[0];
      }
      assert.equal(recorded.kind, "expired");
      assert.equal(recorded.event_id, expired.event_id);
      assert.equal(await cli(["list", "--json"]), "[]");
    } finally {
      const { code } = await child.stop();
      assert.equal(code, 0, output.stderr);
    }
    return output.stdout + output.stderr;
  }
}
