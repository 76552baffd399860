/**
 * The status page of `stormlock serve`: `page/index.html`, `page/app.css`
 * and `page/app.js`, linted, formatted and type-checked as the files they
 * are, and imported as text so that they travel in the module graph: into
 * a compiled binary, and from JSR, with no file read and no asset step.
 * The script builds every piece of lock data into the DOM with
 * `textContent`, never as markup, and the server's CSP forbids inline code
 * and `innerHTML` (Trusted Types), so a hostile reason stays text.
 *
 * @module
 */
import { span } from "../../kit/time.ts";
import html from "./page/index.html" with { type: "text" };
import css from "./page/app.css" with { type: "text" };
import script from "./page/app.js" with { type: "text" };

/** The script's stand-in for `span`, which the CLI's own rule replaces. */
const SPAN_STAND_IN = /^ *function span\(ms\) \{\n.*not inlined.*\n *\}$/m;

/**
 * The HTML shell: no data, no inline script or style.
 * @example
 * ```ts
 * import { PAGE_HTML } from "./page.ts";
 * console.log(PAGE_HTML.startsWith("<!doctype html>")); // true
 * ```
 */
export const PAGE_HTML: string = html;

/**
 * The stylesheet: light and dark themes from `prefers-color-scheme`, and a
 * card layout on narrow screens.
 * @example
 * ```ts
 * import { PAGE_CSS } from "./page.ts";
 * console.log(PAGE_CSS.includes("prefers-color-scheme")); // true
 * ```
 */
export const PAGE_CSS: string = css;

/**
 * The page's script, with the relative times ("12m ago") said by the very
 * function the CLI uses. It asks for the token once (kept in session
 * storage), streams `/api/events` with `fetch` so the header can be sent,
 * reconnects when the stream drops, and shows a banner while the store is
 * down. All data goes into the DOM as text.
 * @example
 * ```ts
 * import { PAGE_JS } from "./page.ts";
 * console.log(PAGE_JS.includes("innerHTML")); // false
 * ```
 */
export const PAGE_JS: string = script.replace(
  SPAN_STAND_IN,
  () => `  ${span.toString()}`,
);
