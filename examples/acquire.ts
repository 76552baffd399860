// deno-lint-ignore-file no-import-prefix -- a script for users without a deno.json
import { LockHeldError, openLock } from "jsr:@stormlock/stormlock@^0.1.0";

await using lock = await openLock("nightly-backup");
const lease = await lock.acquire("10m").catch((error) => {
  if (!(error instanceof LockHeldError)) throw error;
  console.error(`Busy: ${error.holder.principal} holds it`);
  Deno.exit(2);
});
try {
  console.log(`Holding ${lease.resource} until ${lease.expires.toISOString()}`);
  // … the risky work …
} finally {
  await lock.release(lease.id);
}
