/**
 * One process of a contended burst (tests/faults_test.ts): opens one
 * backend through `openBackend`, as an application would, waits for the
 * gate file, then sends `count` acquires of one resource at once and
 * prints how each ended, as JSON on stdout. Closing the backend waits for
 * its clean-up (an etcd store's revokes).
 *
 * Usage: burst.ts BACKEND OPTIONS_JSON RESOURCE COUNT READY_FILE GATE_FILE
 *
 * @module
 */
import {
  AcquireUnknownError,
  BackendUnavailableError,
  LockHeldError,
  openBackend,
} from "../../mod.ts";

/** How the acquires of one process ended. */
export interface BurstReport {
  /** Lease ids of acquires that returned a lease. */
  won: string[];
  /** Lease ids of acquires whose outcome is unknown (handed to the caller). */
  unknown: string[];
  /** Holder ids named by refusals. */
  heldBy: string[];
  /** Messages of acquires that failed otherwise (timeouts). */
  failed: string[];
}

if (import.meta.main) {
  const [name, optionsJson, resource, count, ready, gate] = Deno.args;
  const backend = await openBackend(JSON.parse(optionsJson), {
    name,
    section: `backend.${name}`,
  });
  const report: BurstReport = { won: [], unknown: [], heldBy: [], failed: [] };
  try {
    // One round trip first, so connecting is not part of the burst.
    await backend.current(`${resource}-warm`);
    Deno.writeTextFileSync(ready, "");
    while (true) {
      try {
        Deno.statSync(gate);
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    await Promise.all(
      Array.from({ length: Number(count) }, async (_, i) => {
        try {
          const lease = await backend.acquire(resource, `burst${i}`, 600);
          report.won.push(lease.id);
        } catch (error) {
          if (error instanceof LockHeldError) {
            report.heldBy.push(error.holder.id);
          } else if (error instanceof AcquireUnknownError) {
            report.unknown.push(error.leaseId);
          } else if (error instanceof BackendUnavailableError) {
            report.failed.push(error.message);
          } else {
            throw error;
          }
        }
      }),
    );
  } finally {
    await backend.close();
  }
  console.log(JSON.stringify(report));
}
