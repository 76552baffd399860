/**
 * `stormlock watch --json` on every built-in store, through the CLI as a
 * user runs it: it sees acquire, release, break and an expiry that nobody
 * follows with an acquire, in order, and the expiry is recorded.
 */
import assert from "assert";
import { backendTest, CliHome, repoPath, sleep } from "./helpers.ts";

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
    const extra = { AWS_EC2_METADATA_DISABLED: "true" };
    const init = await home.run(["init"], extra);
    assert.equal(init.code, 0, init.stderr);
    const resource = `w/${unique()}`;
    const child = new Deno.Command("sh", {
      args: [repoPath("scripts", "stormlock"), "watch", "--json", "w/"],
      cwd: home.cwd,
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        DENO: Deno.execPath(),
        ...home.env,
        ...extra,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = { stdout: "", stderr: "" };
    const read = async (
      stream: ReadableStream<Uint8Array>,
      key: "stdout" | "stderr",
    ) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        output[key] += decoder.decode(chunk, { stream: true });
      }
    };
    const reading = Promise.all([
      read(child.stdout, "stdout"),
      read(child.stderr, "stderr"),
    ]);
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
      try {
        child.kill("SIGTERM");
      } catch { /* already ended */ }
      const { code } = await child.status;
      await reading;
      assert.equal(code, 0, output.stderr);
    }
  });
}
