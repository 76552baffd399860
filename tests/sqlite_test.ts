import assert from "assert";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
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

test("a database written by Stormlock 0.1 is upgraded in place and keeps its lease", async () => {
  const old = join(folder, "v01.db");
  const db = new DatabaseSync(old);
  db.exec(`
    CREATE TABLE leases (
      resource   TEXT PRIMARY KEY,
      lease_id   TEXT NOT NULL,
      principal  TEXT NOT NULL,
      created_ms INTEGER NOT NULL,
      expires_ms INTEGER NOT NULL
    );
    CREATE INDEX leases_expires ON leases (expires_ms);
  `);
  const id = "0123456789abcdef0123456789abcdef";
  const now = Date.now();
  db.prepare("INSERT INTO leases VALUES (?, ?, ?, ?, ?)").run(
    "legacy",
    id,
    "ann@old",
    now,
    now + 60_000,
  );
  db.close();
  for (let open = 0; open < 2; open++) {
    // Opening twice: the upgrade is safe to repeat.
    const backend = await openBackend({ path: old }, context);
    try {
      const lease = await backend.current("legacy");
      assert.equal(lease?.id, id);
      assert.equal(lease?.fence, 0);
      assert.equal(lease?.reason, undefined);
      if (open === 1) {
        await backend.release("legacy", id);
        const next = await backend.acquire("legacy", "bob", 60);
        assert.equal(next.fence, 1);
        const later = await backend.acquire("other", "bob", 60);
        assert.equal(later.fence, 1);
      }
    } finally {
      await backend.close();
    }
  }
});
