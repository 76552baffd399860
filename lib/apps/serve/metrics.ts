/**
 * `GET /metrics` of `stormlock serve`, in the Prometheus text format:
 * what this server process counted (requests, latency, lease events it
 * performed) and what the store holds now (live locks, held seconds,
 * waiters), read at scrape time, so no lock state lives in the process.
 *
 * @module
 */
import { INTERNAL_MARK } from "../../kit/reserved.ts";
import type { Lease } from "../../kit/types.ts";
import { splitQueue } from "../../composition/queue.ts";

/** Latency buckets, in seconds. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Escapes a label value as the text format wants. */
function label(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll(
    "\n",
    "\\n",
  );
}

/** Counters of one server process, and the page they render to. */
export class Metrics {
  readonly #requests = new Map<string, number>();
  readonly #latency = new Map<
    string,
    { buckets: number[]; sum: number; count: number }
  >();
  readonly #events = new Map<string, number>();

  /** Counts one answered request. */
  request(route: string, status: number, seconds: number): void {
    const key = `${route}\u0000${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
    let latency = this.#latency.get(route);
    if (!latency) {
      latency = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#latency.set(route, latency);
    }
    BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) latency.buckets[i]++;
    });
    latency.sum += seconds;
    latency.count++;
  }

  /** Counts one lease event this server performed. */
  event(kind: string): void {
    this.#events.set(kind, (this.#events.get(kind) ?? 0) + 1);
  }

  /** The metrics page, with the store's live leases (queue included). */
  render(leases: Lease[], now = Date.now()): string {
    const { locks, waiting } = splitQueue(leases);
    const lines: string[] = [];
    lines.push(
      "# HELP stormlock_locks_live Locks held now.",
      "# TYPE stormlock_locks_live gauge",
      `stormlock_locks_live ${
        locks.filter((l) => !l.resource.includes(INTERNAL_MARK)).length
      }`,
      "# HELP stormlock_lock_held_seconds How long each live lock has been held.",
      "# TYPE stormlock_lock_held_seconds gauge",
      ...locks.map((lease) =>
        `stormlock_lock_held_seconds{resource="${label(lease.resource)}"} ${
          Math.max(0, (now - lease.created.getTime()) / 1000)
        }`
      ),
      "# HELP stormlock_lock_waiters Waiters queued for each lock.",
      "# TYPE stormlock_lock_waiters gauge",
      ...[...waiting].map(([resource, queue]) =>
        `stormlock_lock_waiters{resource="${label(resource)}"} ${queue.length}`
      ),
      "# HELP stormlock_events_total Lease events this server performed, by kind.",
      "# TYPE stormlock_events_total counter",
      ...[...this.#events].map(([kind, count]) =>
        `stormlock_events_total{kind="${label(kind)}"} ${count}`
      ),
      "# HELP stormlock_http_requests_total Requests answered, by route and status.",
      "# TYPE stormlock_http_requests_total counter",
      ...[...this.#requests].map(([key, count]) => {
        const [route, status] = key.split("\u0000");
        return `stormlock_http_requests_total{route="${
          label(route)
        }",status="${status}"} ${count}`;
      }),
      "# HELP stormlock_http_request_duration_seconds Time to answer, by route.",
      "# TYPE stormlock_http_request_duration_seconds histogram",
    );
    for (const [route, latency] of this.#latency) {
      const name = label(route);
      BUCKETS.forEach((bound, i) =>
        lines.push(
          `stormlock_http_request_duration_seconds_bucket{route="${name}",le="${bound}"} ${
            latency.buckets[i]
          }`,
        )
      );
      lines.push(
        `stormlock_http_request_duration_seconds_bucket{route="${name}",le="+Inf"} ${latency.count}`,
        `stormlock_http_request_duration_seconds_sum{route="${name}"} ${latency.sum}`,
        `stormlock_http_request_duration_seconds_count{route="${name}"} ${latency.count}`,
      );
    }
    return `${lines.join("\n")}\n`;
  }
}
