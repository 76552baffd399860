/**
 * Makes Debian's Chromium available for the browser tests of
 * `stormlock serve`. Nothing runs in the background: each test starts its
 * own headless browser, so `stop` has nothing to do.
 */
import { ensureApt, log } from "./_server.ts";
import type { StartedServer } from "./_server.ts";

/** The server's name in the test log. */
export const name = "chromium";

const CHROMIUM = "/usr/bin/chromium";

/**
 * Installs the `chromium` package with apt-get if it is missing.
 *
 * Exports `STORMLOCK_TEST_CHROMIUM`, the browser the tests drive through
 * playwright-core; no browser is ever downloaded.
 */
export async function start(_workDir: string): Promise<StartedServer> {
  await ensureApt(CHROMIUM, ["chromium"]);
  log(`chromium at ${CHROMIUM}`);
  return {
    env: { STORMLOCK_TEST_CHROMIUM: CHROMIUM },
    stop: () => Promise.resolve(),
  };
}
