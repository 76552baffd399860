/**
 * The CLI's tables and long views, for people: `list`, `history`,
 * `token list` and `current --long`. Times are local with their offset
 * (in the header when every row agrees) and relative; text from other
 * users is escaped.
 *
 * @module
 */
import { printable } from "../../kit/text.ts";
import type { Lease, LeaseEvent } from "../../kit/types.ts";
import type { ListedLease } from "../../composition/stormlock.ts";
import { coloursFor } from "./colour.ts";
import { localOffset, localTime, relative, tableTime } from "./format.ts";
import { printTable } from "./terminal.ts";

/** A time column's header: the title and, when all agree, the offset. */
export function timeTitle(title: string, dates: Date[]): string {
  const offsets = new Set(dates.map(localOffset));
  return offsets.size === 1 ? `${title} (${[...offsets][0]})` : title;
}

/** A time column's cell: the offset is in the header when all agree. */
export function timeCell(date: Date, dates: Date[], now: number): string {
  return new Set(dates.map(localOffset)).size === 1
    ? tableTime(date, now)
    : `${localTime(date, new Date(now))} ${relative(date, now)}`;
}

/** One lease, a field a line, as `current --long` shows it. */
export function leaseDetails(lease: Lease): string {
  const now = Date.now();
  const lines = [
    ["resource", printable(lease.resource)],
    ["holder", printable(lease.principal)],
    ...(lease.host ? [["host", printable(lease.host)]] : []),
    ...(lease.reason ? [["reason", printable(lease.reason)]] : []),
    ...(lease.link ? [["link", printable(lease.link)]] : []),
    ["since", `${localTime(lease.created)}, ${relative(lease.created, now)}`],
    ["expires", `${localTime(lease.expires)}, ${relative(lease.expires, now)}`],
    ["fence", String(lease.fence)],
    ["lease", lease.id],
  ];
  return lines.map(([key, value]) => `${`${key}:`.padEnd(10)}${value}`)
    .join("\n");
}

/**
 * `current --long`: the lease, who waits, and an open hand-over request.
 *
 * @param lease The live lease.
 * @param waiting Who waits, first come first.
 * @param request The open hand-over request, or `null`.
 */
export function leaseLong(
  lease: Lease,
  waiting: Lease[],
  request: Lease | null,
): string {
  return [
    leaseDetails(lease),
    ...(waiting.length > 0
      ? [
        `${"waiting:".padEnd(10)}${
          waiting.map((w) => printable(w.principal)).join(", ")
        }`,
      ]
      : []),
    ...(request
      ? [
        `${"request:".padEnd(10)}${printable(request.principal)}${
          request.reason ? `: ${printable(request.reason)}` : ""
        } (${relative(request.created)})`,
      ]
      : []),
  ].join("\n");
}

/** Prints `list`'s table: one live lock a row, expiring soon in yellow. */
export function printLeaseTable(leases: ListedLease[]): void {
  const now = Date.now();
  const soon = (lease: Lease) => lease.expires.getTime() - now < 5 * 60_000;
  const created = leases.map((lease) => lease.created);
  const expires = leases.map((lease) => lease.expires);
  const colours = coloursFor(Deno.stdout);
  const many = new Set(leases.map((lease) => lease.backend)).size > 1;
  printTable(
    [
      ...(many
        ? [{ title: "BACKEND", cells: leases.map((l) => l.backend) }]
        : []),
      {
        title: "RESOURCE",
        cells: leases.map((l) => l.resource),
        shrink: 12,
      },
      {
        title: "HOLDER",
        cells: leases.map((l) => l.principal),
        shrink: 10,
      },
      {
        title: "HOST",
        cells: leases.map((l) =>
          l.host && !l.principal.endsWith(`@${l.host}`) ? l.host : ""
        ),
        optional: 2,
        shrink: 8,
      },
      {
        title: "REASON",
        cells: leases.map((l) => l.reason ?? ""),
        shrink: 8,
      },
      {
        title: timeTitle("SINCE", created),
        cells: leases.map((l) => timeCell(l.created, created, now)),
        optional: 1,
      },
      {
        title: timeTitle("EXPIRES", expires),
        cells: leases.map((l) => timeCell(l.expires, expires, now)),
      },
      {
        title: "FENCE",
        cells: leases.map((l) => String(l.fence)),
        optional: 0,
      },
      {
        title: "WAITING",
        cells: leases.map((l) =>
          l.waiting.length > 0 ? String(l.waiting.length) : ""
        ),
        optional: 3,
      },
      {
        title: "REQUESTED BY",
        cells: leases.map((l) => l.request?.principal ?? ""),
        optional: 3,
      },
      {
        title: "LINK",
        cells: leases.map((l) => l.link ?? ""),
        optional: 4,
        shrink: 20,
      },
    ],
    (column, row, text) =>
      column === "HOLDER"
        ? colours.bold(text)
        : column.startsWith("EXPIRES") && soon(leases[row])
        ? colours.yellow(text)
        : text,
  );
}

/** Prints `history`'s table: one event a row, newest first. */
export function printHistoryTable(events: LeaseEvent[]): void {
  const now = Date.now();
  const at = events.map((event) => event.at);
  const colours = coloursFor(Deno.stdout);
  printTable(
    [
      {
        title: timeTitle("WHEN", at),
        cells: events.map((event) => timeCell(event.at, at, now)),
      },
      { title: "EVENT", cells: events.map((event) => event.kind) },
      {
        title: "FENCE",
        cells: events.map((event) => String(event.fence)),
        optional: 0,
      },
      {
        title: "HOLDER",
        cells: events.map((event) => event.principal),
        shrink: 10,
      },
      {
        title: "HOST",
        cells: events.map((event) =>
          event.host && !event.principal.endsWith(`@${event.host}`)
            ? event.host
            : ""
        ),
        optional: 1,
        shrink: 8,
      },
      {
        title: "REASON",
        cells: events.map((event) => event.reason ?? ""),
        shrink: 8,
      },
      {
        title: "BY",
        cells: events.map((event) =>
          event.by ? `${event.by.principal}: ${event.by.reason}` : ""
        ),
        optional: 2,
        shrink: 12,
      },
      {
        title: "LINK",
        cells: events.map((event) => event.link ?? ""),
        optional: 3,
        shrink: 20,
      },
    ],
    (column, row, text) =>
      column === "EVENT" && events[row].kind === "broken"
        ? colours.red(text)
        : column === "EVENT" && events[row].kind === "expired"
        ? colours.yellow(text)
        : text,
  );
}

/** Prints `token list`'s table: names, scopes, resources; never hashes. */
export function printTokenTable(
  tokens: {
    name: string;
    scopes: string[];
    resources?: string[];
    created: string | number;
  }[],
): void {
  printTable([
    { title: "NAME", cells: tokens.map((entry) => entry.name) },
    {
      title: "SCOPES",
      cells: tokens.map((entry) => entry.scopes.join(",")),
    },
    {
      title: "RESOURCES",
      cells: tokens.map((entry) => entry.resources?.join(",") ?? "*"),
    },
    {
      title: "CREATED",
      cells: tokens.map((entry) => tableTime(new Date(entry.created))),
    },
  ]);
}
