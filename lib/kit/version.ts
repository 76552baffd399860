/**
 * Stormlock's version; `scripts/compile.ts` checks it matches deno.json.
 * @example
 * ```ts
 * import { VERSION } from "@stormlock/stormlock";
 * console.log(VERSION); // e.g. "0.1.0"
 * ```
 */
export const VERSION = "0.1.0";
