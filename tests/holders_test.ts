/**
 * Slots and shared holds from the command line, on the default SQLite
 * store with real processes racing; and the one line a store without the
 * `holders` capability gives.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { CliHome, repoPath } from "./helpers.ts";

/** A fresh HOME whose default store is an SQLite file in it. */
function home(): CliHome {
  return new CliHome();
}

Deno.test("cli: 20 processes race for --slots 3: exactly 3 win, the rest exit 2 naming the slots", async () => {
  using h = home();
  const results = await Promise.all(
    Array.from(
      { length: 20 },
      () => h.run(["acquire", "--slots", "3", "pool"]),
    ),
  );
  const won = results.filter((result) => result.code === 0);
  assert.equal(won.length, 3, results.map((r) => r.stderr).join("\n"));
  for (const result of results) {
    if (result.code === 0) {
      assert.match(result.stdout, /^[0-9a-f]{32}\n$/);
    } else {
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /all 3 slots taken/);
    }
  }
  const current = await h.run(["current", "--json", "pool"]);
  assert.equal(current.code, 0, current.stderr);
  const shown = JSON.parse(current.stdout);
  assert.equal(shown.limit, 3);
  assert.equal(shown.free, 0);
  assert.deepEqual(
    shown.holders.map((lease: { id: string }) => lease.id).sort(),
    won.map((result) => result.stdout.trim()).sort(),
  );
  const fences = shown.holders.map((lease: { fence: number }) => lease.fence);
  assert.deepEqual(fences, [...fences].sort((a, b) => a - b));
  assert.equal(new Set(fences).size, 3);
  // A table row per holder.
  const table = await h.run(["list"]);
  assert.equal(table.stdout.trim().split("\n").length, 4, table.stdout);
  assert.match(table.stdout, /SLOTS[\s\S]*3\/3/);
  const plain = await h.run(["current", "pool"]);
  assert.equal(plain.stdout.trim().split("\n").length, 3, plain.stdout);
});

Deno.test("cli: another --slots while held is refused in one line naming the stored N; shared and exclusive exclude each other", async () => {
  using h = home();
  const first = await h.run(["acquire", "--slots", "2", "pool"]);
  assert.equal(first.code, 0, first.stderr);
  const other = await h.run(["acquire", "--slots", "5", "pool"]);
  assert.equal(other.code, 2);
  assert.equal(other.stderr.trim().split("\n").length, 1, other.stderr);
  assert.match(other.stderr, /held with 2 slots .*--slots 2/);
  const exclusive = await h.run(["acquire", "pool"]);
  assert.equal(exclusive.code, 2);
  assert.match(exclusive.stderr, /held with 2 slots/);
  const reader = await h.run(["acquire", "--shared", "rw"]);
  assert.equal(reader.code, 0, reader.stderr);
  const second = await h.run(["acquire", "--shared", "--json", "rw"]);
  assert.equal(JSON.parse(second.stdout).limit, 0);
  const writer = await h.run(["acquire", "rw"]);
  assert.equal(writer.code, 2);
  assert.match(writer.stderr, /held shared by 2/);
  const both = await h.run(["acquire", "--shared", "--slots", "2", "rw"]);
  assert.equal(both.code, 64);
  const bad = await h.run(["acquire", "--slots", "0", "rw"]);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /slots/);
});

Deno.test("cli: run --shared holds beside another shared hold and releases its own", async () => {
  using h = home();
  const reader = await h.run(["acquire", "--shared", "rw"]);
  assert.equal(reader.code, 0, reader.stderr);
  const ran = await h.run([
    "run",
    "--shared",
    "rw",
    "--",
    "sh",
    "-c",
    'echo "$STORMLOCK_FENCE"',
  ]);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.trim(), "2");
  const current = await h.run(["current", "--id-only", "rw"]);
  assert.equal(current.stdout.trim(), reader.stdout.trim());
});

Deno.test("cli: break without LEASE_ID on a lock with several holders asks for the id; with it, breaks that one only", async () => {
  using h = home();
  const ids = [];
  for (let i = 0; i < 2; i++) {
    ids.push((await h.run(["acquire", "--shared", "rw"])).stdout.trim());
  }
  const vague = await h.run(["break", "--yes", "-r", "stuck", "rw"]);
  assert.equal(vague.code, 64, vague.stderr);
  assert.match(vague.stderr, /has 2 holders; name the lease to break/);
  const named = await h.run(["break", "--yes", "-r", "stuck", "rw", ids[1]]);
  assert.equal(named.code, 0, named.stderr);
  const left = await h.run(["current", "--id-only", "rw"]);
  assert.equal(left.stdout.trim(), ids[0]);
});

Deno.test("cli: --slots on a store without the holders capability is one line, exit 78", async () => {
  using h = home();
  h.write(
    "work/minimal-plugin.js",
    Deno.readTextFileSync(repoPath("tests", "fixtures", "minimal-plugin.js")),
  );
  const config = h.write(
    "work/plugin.cfg",
    "[default]\nbackend = memory\n\n[backend.memory]\nmodule = ./minimal-plugin.js\n",
  );
  const result = await h.run(["-c", config, "acquire", "--slots", "3", "pool"]);
  assert.equal(result.code, 78, result.stderr);
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  assert.match(result.stderr, /does not support slots and shared holds/);
  const plain = await h.run(["-c", config, "acquire", "pool"]);
  assert.equal(plain.code, 0, plain.stderr);
});

Deno.test("sqlite: a version 2 database upgrades in place and keeps its lease; an exclusive lease is stored as before", async () => {
  using h = home();
  // Under the state folder, where scripts/stormlock may write.
  const folder = join(h.home, ".local", "state", "stormlock");
  Deno.mkdirSync(folder, { recursive: true });
  const path = join(folder, "old.db");
  const db = new DatabaseSync(path);
  db.exec(`
    CREATE TABLE leases (resource TEXT PRIMARY KEY, lease_id TEXT NOT NULL,
      principal TEXT NOT NULL, created_ms INTEGER NOT NULL,
      expires_ms INTEGER NOT NULL, host TEXT, reason TEXT, link TEXT,
      fence INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE fences (resource TEXT PRIMARY KEY, last INTEGER NOT NULL);
    CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,
      resource TEXT NOT NULL, kind TEXT NOT NULL, at_ms INTEGER NOT NULL,
      lease_id TEXT NOT NULL, principal TEXT NOT NULL, host TEXT, reason TEXT,
      link TEXT, fence INTEGER NOT NULL, created_ms INTEGER NOT NULL,
      expires_ms INTEGER NOT NULL, by_principal TEXT, by_host TEXT,
      by_reason TEXT);
    PRAGMA user_version = 2;
  `);
  const id = "ab".repeat(16);
  db.prepare(
    "INSERT INTO leases (resource, lease_id, principal, created_ms, expires_ms, fence) VALUES (?, ?, ?, ?, ?, ?)",
  ).run("old", id, "ann@host", Date.now(), Date.now() + 3_600_000, 4);
  db.prepare("INSERT INTO fences (resource, last) VALUES ('old', 4)").run();
  db.close();
  h.write("work/.stormlock.cfg", `[backend.sqlite]\npath = ${path}\n`);
  const shared = await h.run(["acquire", "--shared", "old"]);
  assert.equal(shared.code, 2, shared.stderr);
  assert.match(shared.stderr, /ann@host/);
  const current = await h.run(["current", "--json", "old"]);
  const lease = JSON.parse(current.stdout);
  assert.equal(lease.id, id);
  assert.equal(lease.fence, 4);
  assert.equal(lease.limit, undefined);
  assert.equal((await h.run(["release", "old", id])).code, 0);
  const next = await h.run(["acquire", "old"]);
  assert.equal(next.code, 0, next.stderr);
  const reopened = new DatabaseSync(path);
  const row = reopened.prepare("SELECT * FROM leases WHERE resource = 'old'")
    .get() as Record<string, unknown>;
  reopened.close();
  assert.equal(row.lease_id, next.stdout.trim());
  assert.equal(row.holder_limit, 1);
  assert.equal(row.fence, 5);
});
