/**
 * How leases and events read: local times with their offset and relative
 * times for people, one stable JSON shape for scripts, aligned tables, and
 * the holder message of a refused acquire. Text from other users is
 * escaped everywhere.
 *
 * @module
 */
import { printable, shellQuote, shorten } from "../../kit/text.ts";
import type { Lease, LeaseEvent } from "../../kit/types.ts";
import { historyEventId } from "../../composition/event_id.ts";

export {
  isoTime,
  localOffset,
  localTime,
  relative,
  span,
  when,
} from "../../kit/time.ts";
import { isoTime, localTime, relative, when } from "../../kit/time.ts";

// Characters JSON.stringify leaves raw that a terminal would act on.
const JSON_UNSAFE =
  /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON text in which every control and bidirectional character is a
 * `\uXXXX` escape: the data is unchanged, the terminal is safe.
 * @example
 * ```ts
 * import { safeJson } from "./format.ts";
 * safeJson({ reason: "a\u202eb" }); // '{"reason":"a\\u202eb"}'
 * ```
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    JSON_UNSAFE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The JSON shape of a lease, shared by `acquire`, `current`, `list` and
 * `history`.
 * @example
 * ```ts
 * import { leaseJson } from "./format.ts";
 * const now = new Date(0);
 * leaseJson({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now });
 * ```
 */
export function leaseJson(
  lease: Lease & {
    backend?: string;
    waiting?: Lease[];
    request?: Lease | null;
  },
) {
  return {
    ...(lease.backend !== undefined ? { backend: lease.backend } : {}),
    resource: lease.resource,
    // A lock server hides other principals' lease ids: shown as null.
    id: lease.id || null,
    principal: lease.principal,
    host: lease.host ?? null,
    reason: lease.reason ?? null,
    link: lease.link ?? null,
    fence: lease.fence,
    created: isoTime(lease.created),
    expires: isoTime(lease.expires),
    // Slots (N) or shared (0); absent on an exclusive lease, as before.
    ...(lease.limit !== undefined ? { limit: lease.limit } : {}),
    ...(lease.waiting !== undefined
      ? { waiting: lease.waiting.map(waiterJson) }
      : {}),
    ...(lease.request !== undefined
      ? { request: lease.request ? requestJson(lease.request) : null }
      : {}),
  };
}

/**
 * {@linkcode leaseJson}, with each member's lease when it is a lock set's.
 * @example
 * ```ts ignore
 * print(safeJson(leaseOrSetJson(await set.acquire("10m"))));
 * ```
 */
export function leaseOrSetJson(
  lease: Parameters<typeof leaseJson>[0] & { members?: Lease[] },
): ReturnType<typeof leaseJson> & {
  members?: ReturnType<typeof leaseJson>[];
} {
  return lease.members
    ? { ...leaseJson(lease), members: lease.members.map(leaseJson) }
    : leaseJson(lease);
}

/**
 * The JSON shape of a hand-over request: who asks, from where, why, and
 * since when.
 * @example
 * ```ts
 * import { requestJson } from "./format.ts";
 * const now = new Date(0);
 * requestJson({ resource: "r", id: "0".repeat(32), principal: "bob", reason: "hotfix", fence: 0, created: now, expires: now });
 * ```
 */
export function requestJson(request: Lease) {
  return {
    principal: request.principal,
    host: request.host ?? null,
    reason: request.reason ?? null,
    since: isoTime(request.created),
  };
}

/**
 * The JSON shape of one waiter: who, and since when.
 * @example
 * ```ts
 * import { waiterJson } from "./format.ts";
 * const now = new Date(0);
 * waiterJson({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 0, created: now, expires: now });
 * ```
 */
export function waiterJson(waiter: Lease) {
  return {
    principal: waiter.principal,
    host: waiter.host ?? null,
    since: isoTime(waiter.created),
  };
}

/**
 * The JSON shape of a history event: its stable `event_id`, the lease's
 * fields plus `kind`, `at` and, for a break, `by`.
 * @example
 * ```ts
 * import { eventJson } from "./format.ts";
 * const now = new Date(0);
 * eventJson({ kind: "released", at: now, resource: "r", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now });
 * ```
 */
export function eventJson(event: LeaseEvent) {
  return {
    event_id: historyEventId(event),
    kind: event.kind,
    at: isoTime(event.at),
    ...leaseJson(event),
    by: event.by
      ? {
        principal: event.by.principal,
        host: event.by.host ?? null,
        reason: event.by.reason,
      }
      : null,
  };
}

/**
 * Who holds a lease, with host: `ann@build-1` or `ann (on build-1)`.
 * @example
 * ```ts
 * import { holderText } from "./format.ts";
 * const now = new Date(0);
 * holderText({ resource: "r", id: "0".repeat(32), principal: "ann", host: "h", fence: 1, created: now, expires: now }); // "ann (on h)"
 * ```
 */
export function holderText(lease: Lease): string {
  const who = shorten(lease.principal, 80);
  return lease.host && !lease.principal.endsWith(`@${lease.host}`)
    ? `${who} (on ${shorten(lease.host, 80)})`
    : who;
}

/**
 * The one line a refused acquire prints: holder, host, reason, link, age,
 * time left, fence, and the command to break it if it is stale.
 * @example
 * ```ts
 * import { heldMessage } from "./format.ts";
 * const now = new Date();
 * console.log(heldMessage({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 3, created: now, expires: now }));
 * ```
 */
export function heldMessage(
  lease: Lease,
  now = Date.now(),
  queue: { waiting?: number; queued?: boolean; holders?: number } = {},
): string {
  const waiting = queue.waiting ?? 0;
  const holders = queue.holders ?? 1;
  if (queue.queued) {
    return `"${
      shorten(lease.resource)
    }" is free, but ${waiting} waiting got there first (the first is ${
      shorten(lease.principal)
    }, since ${when(lease.created, now)}); join the queue with --wait`;
  }
  const onOtherHost = lease.host && !lease.principal.endsWith(`@${lease.host}`);
  const parts = [
    lease.limit === undefined
      ? `"${shorten(lease.resource)}" is held by ${shorten(lease.principal)}`
      : `"${shorten(lease.resource)}" is held ${
        lease.limit === 0
          ? `shared by ${holders}`
          : `with all ${lease.limit} slots taken`
      }, the first by ${shorten(lease.principal)}`,
    ...(lease.reason ? [`for "${shorten(lease.reason)}"`] : []),
    `since ${when(lease.created, now)},`,
    `until ${when(lease.expires, now)}`,
  ];
  const tail = [
    ...(onOtherHost ? [`on host ${shorten(lease.host!)}`] : []),
    ...(lease.fence ? [`fence ${lease.fence}`] : []),
    ...(waiting ? [`${waiting} waiting`] : []),
    ...(lease.link ? [`see ${shorten(lease.link)}`] : []),
    `if it is stale: stormlock break ${
      lease.resource.length > 200
        ? "RESOURCE"
        : printable(shellQuote(lease.resource))
    } --reason '…'`,
  ];
  return `${parts.join(" ")}; ${tail.join("; ")}`;
}

/**
 * Rows as an aligned table, header first; cells are escaped and cut.
 * @example
 * ```ts
 * import { table } from "./format.ts";
 * console.log(table(["A", "B"], [["1", "two"]]));
 * ```
 */
export function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.map((row) => row.map((c) => shorten(c, 60)))];
  const widths = header.map((_, i) =>
    Math.max(...cells.map((row) => [...row[i]].length))
  );
  return cells.map((row) =>
    row.map((cell, i) =>
      i === row.length - 1
        ? cell
        : cell + " ".repeat(widths[i] - [...cell].length)
    ).join("  ").trimEnd()
  ).join("\n");
}

/**
 * One column of a {@linkcode fitTable}: its title and cells, and what may
 * give way when the table is wider than the terminal.
 */
export interface TableColumn {
  /** The header. */
  title: string;
  /** One cell per row, as plain text; escaped when drawn. */
  cells: string[];
  /**
   * Whether the column is left out when there is no room; columns with a
   * higher number go first. Absent: always shown.
   */
  optional?: number;
  /** Whether cells may be cut to fit, down to this many characters. */
  shrink?: number;
}

/** A table drawn to a width, and what had to give way. */
export interface FittedTable {
  /** The lines, header first. */
  text: string;
  /** How many cells were cut (each ends in `…`). */
  cut: number;
  /** Titles of columns left out for lack of room. */
  dropped: string[];
}

/**
 * Draws columns as an aligned table no wider than `width`: optional
 * columns that are empty, then those that don't fit, are left out; then
 * the widest shrinkable cells are cut, ending in `…`. With an infinite
 * width (no terminal) the layout does not depend on the environment, and
 * only cells over 60 characters are cut, saying how much.
 *
 * @param columns The columns, left to right.
 * @param width The terminal's width, or `Infinity`.
 * @param paint Styles a drawn cell (colours); it must not change its width.
 * @example
 * ```ts
 * import { fitTable } from "./format.ts";
 * const { text } = fitTable([{ title: "A", cells: ["1"] }, { title: "B", cells: ["two"] }], 80);
 * console.log(text); // "A  B\n1  two"
 * ```
 */
export function fitTable(
  columns: TableColumn[],
  width = Infinity,
  paint: (column: string, row: number, text: string) => string = (
    _column,
    _row,
    text,
  ) => text,
): FittedTable {
  const size = (text: string) => [...text].length;
  let cut = 0;
  const shown = columns
    .filter((column) =>
      column.optional === undefined || column.cells.some((cell) => cell !== "")
    )
    .map((column) => ({
      ...column,
      cells: column.cells.map((cell) => {
        const text = Number.isFinite(width)
          ? printable(cell)
          : shorten(cell, 60);
        if (text !== printable(cell)) cut++;
        return text;
      }),
    }));
  const widths = () =>
    shown.map((column) =>
      Math.max(size(column.title), ...column.cells.map(size))
    );
  let sizes = widths();
  const total = () =>
    sizes.reduce((sum, w) => sum + w, 0) + 2 * (sizes.length - 1);
  const dropped: string[] = [];
  // Optional columns give way only when cutting every cell as far as it
  // may go would still not make the table fit.
  const floors = () =>
    shown.map((column, index) =>
      column.shrink === undefined
        ? sizes[index]
        : Math.min(sizes[index], Math.max(column.shrink, size(column.title)))
    );
  const narrowest = () =>
    floors().reduce((sum, w) => sum + w, 0) + 2 * (shown.length - 1);
  while (narrowest() > width) {
    const optional = shown
      .map((column, index) => ({ column, index }))
      .filter(({ column }) => column.optional !== undefined)
      .sort((a, b) => b.column.optional! - a.column.optional!)[0];
    if (!optional) break;
    dropped.push(optional.column.title);
    shown.splice(optional.index, 1);
    sizes = widths();
  }
  while (total() > width) {
    let widest = -1;
    shown.forEach((column, index) => {
      const floor = Math.max(column.shrink ?? Infinity, size(column.title));
      if (
        sizes[index] > floor && (widest < 0 || sizes[index] > sizes[widest])
      ) {
        widest = index;
      }
    });
    if (widest < 0) break;
    sizes[widest]--;
  }
  const fit = (text: string, w: number) => {
    if (size(text) <= w) return text;
    cut++;
    return `${[...text].slice(0, Math.max(0, w - 1)).join("")}…`;
  };
  const rows = [
    shown.map((column) => column.title),
    ...(shown[0]?.cells ?? []).map((_, row) =>
      shown.map((column) => column.cells[row])
    ),
  ];
  const text = rows.map((row, r) =>
    row.map((cell, i) => {
      const drawn = fit(cell, sizes[i]);
      const padded = i === row.length - 1
        ? drawn
        : drawn + " ".repeat(sizes[i] - size(drawn));
      return r === 0 ? padded : paint(shown[i].title, r - 1, padded);
    }).join("  ").trimEnd()
  ).join("\n");
  return { text, cut, dropped };
}

/**
 * A time in a table cell: the local clock (with the date when not today)
 * and the relative time; the offset goes once in the header
 * ({@linkcode localOffset}).
 * @example
 * ```ts
 * import { tableTime } from "./format.ts";
 * console.log(tableTime(new Date())); // "14:02 0s ago"
 * ```
 */
export function tableTime(date: Date, now = Date.now()): string {
  return `${localTime(date, new Date(now)).replace(/ \([^)]*\)$/, "")} ${
    relative(date, now)
  }`;
}

/**
 * The original Stormlock's `current --format` names, in its order.
 * @example
 * ```ts
 * import { ORIGINAL_FORMATS } from "./format.ts";
 * console.log(ORIGINAL_FORMATS.join(", ")); // "id, json, lines, oneline, cols, rows"
 * ```
 */
export const ORIGINAL_FORMATS = [
  "id",
  "json",
  "lines",
  "oneline",
  "cols",
  "rows",
] as const;

/** One of {@linkcode ORIGINAL_FORMATS}. */
export type OriginalFormat = typeof ORIGINAL_FORMATS[number];

/**
 * A lease in one of the original Stormlock's `current` formats, with the
 * original's field order (principal, created, id) and names; the created
 * time is ISO 8601 with milliseconds, in UTC with its offset (the
 * original's had no offset). `json` is the original's three-field object.
 * @example
 * ```ts
 * import { originalFormat } from "./format.ts";
 * const now = new Date(0);
 * const lease = { resource: "r", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now };
 * console.log(originalFormat(lease, "rows"));
 * ```
 */
export function originalFormat(lease: Lease, format: OriginalFormat): string {
  const fields = [printable(lease.principal), isoTime(lease.created), lease.id];
  switch (format) {
    case "id":
      return lease.id;
    case "json":
      return safeJson({
        id: lease.id,
        created: fields[1],
        principal: lease.principal,
      });
    case "lines":
      return fields.join("\n");
    case "oneline":
      return fields.join("\t");
    case "rows":
      return [
        `Principal: ${fields[0]}`,
        `Created: ${fields[1]}`,
        `Id: ${fields[2]}`,
      ].join("\n");
    case "cols": {
      // Every column as wide as the widest field plus four, as before.
      const width = Math.max(...fields.map((field) => [...field].length)) + 4;
      const row = (cells: string[]) =>
        cells.map((cell) => cell + " ".repeat(width - [...cell].length))
          .join("").trimEnd();
      return `${row(["PRINCIPAL", "CREATED", "ID"])}\n${row(fields)}`;
    }
  }
}

/**
 * Why an acquire was refused when the caller already holds the lock, and
 * how to get the lease id.
 *
 * @param holder The caller's own live lease.
 * @param config The `-c` file given, to repeat in the command shown.
 * @example
 * ```ts ignore
 * console.error(ownLeaseMessage(error.holder, "team.cfg"));
 * ```
 */
export function ownLeaseMessage(holder: Lease, config?: string): string {
  return `"${shorten(holder.resource)}" is held by ${
    holderText(holder)
  } (you already hold it) since ${when(holder.created)}, until ${
    when(holder.expires)
  }; your lease id: stormlock${
    config ? ` -c ${shellQuote(config)}` : ""
  } current --id-only ${shellQuote(holder.resource)}`;
}

/**
 * What `list` says when nothing is listed.
 *
 * @param prefix The prefix asked for.
 * @param missing The backends that did not answer.
 * @example
 * ```ts ignore
 * console.error(noLocksMessage("deploy-", []));
 * ```
 */
export function noLocksMessage(prefix: string, missing: string[]): string {
  return `No live locks${
    prefix ? ` whose name starts with "${shorten(prefix)}"` : ""
  }${
    missing.length > 0
      ? ` on the backends that answered (not ${missing.join(", ")})`
      : ""
  }`;
}

/**
 * What `request` says: that the holder was asked, or that someone else
 * asked first.
 *
 * @param resource The lock.
 * @param asked The holder, the request on record, and whether it is ours.
 * @example
 * ```ts ignore
 * console.error(requestMessage("deploy", asked));
 * ```
 */
export function requestMessage(
  resource: string,
  asked: { holder: Lease; request: Lease; mine: boolean },
): string {
  const { holder, request } = asked;
  return asked.mine
    ? `asked ${shorten(holder.principal)} to hand over "${shorten(resource)}"`
    : `Already requested: ${shorten(request.principal)} asked ${
      shorten(holder.principal)
    } for "${shorten(resource)}"${
      request.reason ? `: ${shorten(request.reason)}` : ""
    }; yours was not recorded`;
}
