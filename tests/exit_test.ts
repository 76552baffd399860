/**
 * The one table from error to exit status (lib/apps/output/exit.ts): each
 * error class gets its documented status, and `--help` and
 * docs/commands.md list the same codes.
 */
import assert from "assert";
import {
  EXIT,
  EXIT_HELP,
  failure,
  OutputError,
} from "../lib/apps/output/exit.ts";
import {
  AcquireUnknownError,
  BackendUnavailableError,
  ConfigError,
  ForbiddenError,
  LeaseLostError,
  LeaseNotHeldError,
  LockHeldError,
  UsageError,
} from "../lib/kit/errors.ts";
import type { Lease } from "../lib/kit/types.ts";

const now = new Date();
const lease: Lease = {
  resource: "deploy",
  id: "0".repeat(32),
  principal: "ann@host",
  fence: 1,
  created: now,
  expires: now,
};

Deno.test("exit: each error maps to its documented status", () => {
  const cases: [unknown, number][] = [
    [new LockHeldError(lease), 2],
    [new LeaseNotHeldError("deploy", lease.id), 3],
    [new UsageError("bad"), 64],
    [new BackendUnavailableError("down"), 69],
    [new AcquireUnknownError("slow", "deploy", lease.id), 69],
    [new OutputError(new Error("EPIPE"), "nothing else was changed"), 74],
    [new LeaseLostError("max-hold", lease, "reached max_hold"), 75],
    [new ForbiddenError("no"), 77],
    [new ConfigError("bad file"), 78],
    [new Deno.errors.NotCapable("Requires net access"), 78],
    [new Error("a bug"), 70],
    ["not even an Error", 70],
  ];
  for (const [error, status] of cases) {
    assert.equal(failure(error).status, status, String(error));
  }
});

Deno.test("exit: the line says why, and a lost lease is not a plain 3", () => {
  const lost = new LeaseLostError("broken", lease, "Lease was broken by bob");
  assert.equal(lost.code, "LEASE_NOT_HELD");
  assert.deepEqual(failure(lost), {
    status: 75,
    message: "Lease was broken by bob",
  });
  assert.match(failure(new LockHeldError(lease)).message, /held by ann@host/);
  assert.match(
    failure(new Deno.errors.NotCapable("Requires net access")).message,
    /lacks a Deno permission/,
  );
  assert.match(failure(new Error("a bug")).message, /^internal error: a bug/);
});

Deno.test("exit: --help and docs/commands.md list the same codes as the table", () => {
  const inHelp = [...EXIT_HELP.matchAll(/^ {2}(\d+) /gm)].map((m) => +m[1]);
  const page = Deno.readTextFileSync(
    new URL("../docs/commands.md", import.meta.url),
  );
  const section = page.slice(page.indexOf("## Exit codes"));
  const inDocs = [...section.matchAll(/^\| (\d+) +\|/gm)].map((m) => +m[1]);
  // 126 and 127 are a shell's, which run follows for a command it can't start.
  const ours = Object.values(EXIT).filter((code) => code < 126);
  assert.deepEqual(inHelp, [...ours].sort((a, b) => a - b));
  assert.deepEqual(inDocs, inHelp);
});
