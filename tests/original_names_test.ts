/**
 * What users of the original Stormlock bring along: `current --format`
 * with its six formats, and its backend and option names, each accepted
 * with a note naming ours where they differ, never showing a secret.
 */
import assert from "assert";
import { openBackend } from "../mod.ts";
import type { BackendOptions } from "../mod.ts";
import { assertCleanExit, CliHome } from "./helpers.ts";

const CREATED = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$/;

Deno.test("original: current -f prints each of the original's formats", async () => {
  using home = new CliHome();
  const config = home.write(
    "x.cfg",
    "[default]\nprincipal = test_user\nttl = 1 day\n",
  );
  const run = (...args: string[]) => home.run(["-c", config, ...args]);
  const id = (await run("acquire", "r")).stdout.trim();
  const format = async (name: string, flag = "-f") => {
    const result = await run("current", flag, name, "r");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    return result.stdout;
  };

  const oneline = await format("oneline");
  const [principal, created, leaseId] = oneline.trimEnd().split("\t");
  assert.deepEqual([principal, leaseId], ["test_user", id]);
  assert.match(created, CREATED);
  assert.equal(oneline, (await run("current", "r")).stdout, "the default");

  assert.equal(await format("lines"), `test_user\n${created}\n${id}\n`);
  assert.equal(
    await format("rows", "--format"),
    `Principal: test_user\nCreated: ${created}\nId: ${id}\n`,
  );
  assert.equal(await format("id"), `${id}\n`);
  assert.equal(
    await format("json"),
    `${JSON.stringify({ id, created, principal: "test_user" })}\n`,
  );
  const cols = (await format("cols")).split("\n");
  const width = id.length + 4;
  assert.equal(
    cols[0],
    `${"PRINCIPAL".padEnd(width)}${"CREATED".padEnd(width)}ID`,
  );
  assert.equal(
    cols[1],
    `${"test_user".padEnd(width)}${created.padEnd(width)}${id}`,
  );
  assert.equal(cols[2], "");
  // As the original parsed it: --format=NAME, after the resource.
  assert.equal(
    (await run("current", "r", "--format=id")).stdout,
    `${id}\n`,
  );

  // --format json is the original's three fields; --json is ours.
  const ours = JSON.parse((await run("current", "--json", "r")).stdout);
  const theirs = JSON.parse(await format("json"));
  for (const key of Object.keys(theirs)) assert.equal(ours[key], theirs[key]);

  await run("release", "r", id);
  const free = await run("current", "-f", "json", "r");
  assert.equal(free.code, 1);
  assert.equal(free.stdout, "");
});

Deno.test("original: a bad or clashing --format is a usage error", async () => {
  using home = new CliHome();
  assertCleanExit(
    await home.run(["current", "-f", "table", "r"]),
    64,
    /--format "table" is not a format; use one of id, json, lines, oneline, cols, rows/,
  );
  for (const other of ["--json", "-l", "-i"]) {
    const result = await home.run(["current", "-f", "id", other, "r"]);
    assert.equal(result.code, 64, result.stderr);
    assert.equal(result.stdout, "");
  }
});

/** Opens a backend from `options` and returns the warnings it gave. */
async function notes(
  name: string,
  options: BackendOptions,
): Promise<string[]> {
  const warnings: string[] = [];
  const backend = await openBackend(
    options,
    { name, section: `backend.${name}`, configPath: "/etc/original.cfg" },
    (message) => warnings.push(message),
  );
  await backend.close();
  return warnings;
}

Deno.test("original: postgresql and connection work, each with one note naming ours", async () => {
  const secret = "s3cret-Original";
  const warnings = await notes("postgresql", {
    connection: `postgresql://test:${secret}@127.0.0.1:1/test`,
    table: "stormlock",
  });
  assert.equal(warnings.length, 2, warnings.join("\n"));
  assert.match(warnings[0], /backend = postgresql .*prefer backend = postgres/);
  assert.match(warnings[1], /\[backend\.postgresql\] connection: .*prefer url/);
  for (const warning of warnings) {
    assert.ok(!warning.includes(secret));
    assert.ok(!warning.includes("\n"));
  }
});

Deno.test("original: etcd, dynamodb, redis and mysql options are ours too, without notes", async () => {
  const cases: [string, BackendOptions][] = [
    ["etcd", {
      prefix: "/",
      host: "127.0.0.1",
      port: "2379",
      timeout: "5",
      user: "root",
      password: "pw",
    }],
    ["dynamodb", {
      table: "stormlock",
      endpoint: "http://127.0.0.1:8000",
      region: "us-east-1",
      access_key_id: "test",
      secret_access_key: "test",
    }],
    ["redis", { url: "redis://127.0.0.1:6379" }],
    ["mysql", {
      host: "127.0.0.1",
      port: "3306",
      user: "root",
      password: "test",
      database: "test",
      table: "stormlock",
    }],
  ];
  for (const [name, options] of cases) {
    assert.deepEqual(await notes(name, options), [], name);
  }
});
