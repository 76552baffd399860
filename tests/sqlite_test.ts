import assert from "assert";
import { join } from "node:path";
import { openBackend } from "../mod.ts";
import { testBackendContract } from "./contract.ts";

const folder = Deno.makeTempDirSync({ prefix: "stormlock-sqlite-" });
const path = join(folder, "locks.db");

testBackendContract(
  "sqlite",
  () => openBackend({ path }, { name: "sqlite", section: "backend.sqlite" }),
);

Deno.test("sqlite: a relative path resolves against the config's folder", async () => {
  const backend = await openBackend({ path: "sub/locks.db" }, {
    name: "sqlite",
    section: "backend.sqlite",
    configPath: join(folder, "stormlock.cfg"),
    configDir: folder,
  });
  await backend.acquire("r", "ann", 60);
  await backend.close();
  assert.ok(Deno.statSync(join(folder, "sub", "locks.db")).isFile);
});
