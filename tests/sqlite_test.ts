import assert from "assert";
import { join } from "node:path";
import { openBackend } from "../mod.ts";
import { testBackendContract } from "../lib/testing/mod.ts";
import { backendTest } from "./helpers.ts";

const folder = Deno.makeTempDirSync({ prefix: "stormlock-sqlite-" });
const path = join(folder, "locks.db");
const context = { name: "sqlite", section: "backend.sqlite" };

testBackendContract(
  "sqlite",
  (extra) => openBackend({ path, ...extra }, context),
);

const test = backendTest("sqlite", { sanitize: true });

test("a relative path resolves against the config's folder", async () => {
  const backend = await openBackend({ path: "sub/locks.db" }, {
    ...context,
    configPath: join(folder, "stormlock.cfg"),
    configDir: folder,
  });
  await backend.acquire("r", "ann", 60);
  await backend.close();
  assert.ok(Deno.statSync(join(folder, "sub", "locks.db")).isFile);
});

test("a file that is not a database says to move it aside", async () => {
  const corrupt = join(folder, "corrupt.db");
  Deno.writeTextFileSync(corrupt, "not sqlite at all ".repeat(100));
  await assert.rejects(
    openBackend({ path: corrupt }, context),
    /failed to open: file is not a database; move the file aside \(a new one is created\) or fix path/,
  );
});
