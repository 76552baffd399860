/** Stormlock's version; `scripts/compile.ts` checks it matches deno.json. */
export const VERSION = "0.1.0";
