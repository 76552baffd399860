/**
 * Event ids are SHA-256 based; the digest is computed in our own code (so
 * that no command loads `node:crypto`), and must agree with node's.
 */
import assert from "assert";
import { createHash } from "node:crypto";
import { eventId, sha256Hex } from "../lib/composition/event_id.ts";

Deno.test("event ids: our SHA-256 agrees with node:crypto on every length across several blocks", () => {
  for (let length = 0; length < 300; length++) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    assert.equal(
      sha256Hex(bytes),
      createHash("sha256").update(bytes).digest("hex"),
      `length ${length}`,
    );
  }
  assert.equal(
    sha256Hex(new TextEncoder().encode("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("event ids: the time, then 20 hex digits of the parts' SHA-256", () => {
  const parts = ["deploy ✓", "released", "0".repeat(32), 5, 7];
  const digest = createHash("sha256").update(parts.join("\u0000")).digest(
    "hex",
  );
  assert.equal(eventId(parts, 5), `0000000000005-${digest.slice(0, 20)}`);
});
