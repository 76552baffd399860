import assert from "assert";
import {
  formatTtl,
  MAX_TTL_SECONDS,
  parseTimeoutMs,
  parseTtl,
  UsageError,
} from "../mod.ts";

Deno.test("parseTtl() reads every form the original accepted", () => {
  const cases: Array<[string, number]> = [
    ["1 days", 86400],
    ["30 minutes", 1800],
    ["2 h", 7200],
    ["1 sec", 1],
    ["1d", 86400],
    ["30m", 1800],
    ["45s", 45],
    ["1 hour", 3600],
    ["3 min", 180],
    ["2 seconds", 2],
    ["1 da", 86400],
  ];
  for (const [text, seconds] of cases) {
    assert.equal(parseTtl(text), seconds, text);
  }
});

Deno.test("parseTtl() reads compound forms and weeks", () => {
  assert.equal(parseTtl("1h30m"), 5400);
  assert.equal(parseTtl("1h 30m 15s"), 5415);
  assert.equal(parseTtl("1w"), 604800);
  assert.equal(parseTtl("2 weeks"), 1209600);
  assert.equal(parseTtl("1d12h"), 129600);
  assert.equal(parseTtl("  10m  "), 600);
});

Deno.test("parseTtl() refuses zero, negative, fractional and absurd values", () => {
  for (
    const text of [
      "",
      "0s",
      "0 days",
      "-1 days",
      "-5m",
      "1.5 hours",
      "0.5s",
      "366 days",
      "53w",
      "99999999999 days",
      "1 hr",
      "1 Days",
      "1 fortnight",
      "h",
      "1h junk",
    ]
  ) {
    assert.throws(() => parseTtl(text), UsageError, `"${text}" was accepted`);
  }
});

Deno.test("parseTtl() accepts exactly 365 days and names the bad input", () => {
  assert.equal(parseTtl("365d"), MAX_TTL_SECONDS);
  assert.throws(() => parseTtl("1 hr"), /Bad TTL "1 hr": "hr" is not a unit/);
});

Deno.test("formatTtl() round-trips through parseTtl()", () => {
  for (
    const seconds of [1, 59, 60, 3600, 5400, 86400, 694861, MAX_TTL_SECONDS]
  ) {
    assert.equal(parseTtl(formatTtl(seconds)), seconds);
  }
  assert.equal(formatTtl(5400), "1h30m");
});

Deno.test("parseTimeoutMs() reads milliseconds, units and bare seconds", () => {
  assert.equal(parseTimeoutMs("500ms", "timeout"), 500);
  assert.equal(parseTimeoutMs("3s", "timeout"), 3000);
  assert.equal(parseTimeoutMs("3", "timeout"), 3000);
  assert.equal(parseTimeoutMs("1m", "timeout"), 60000);
  for (const text of ["0", "0ms", "-1", "soon", ""]) {
    assert.throws(() => parseTimeoutMs(text, "timeout"), UsageError, text);
  }
});
