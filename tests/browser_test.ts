/**
 * Tests of `stormlock serve`'s page in a real headless Chromium, driven by
 * playwright-core: live updates from the CLI, history, escaping, breaking,
 * the outage banner, and light and dark screenshots under `.artifacts/`.
 *
 * Needs STORMLOCK_TEST_CHROMIUM (scripts/servers/chromium.ts sets it);
 * without it every test here is skipped, saying so.
 */
/// <reference lib="dom" />
import assert from "assert";
import { join } from "node:path";
import { CliHome, repoPath, sleep } from "./helpers.ts";
import { BackendUnavailableError, parseConfig, Stormlock } from "../mod.ts";
import { serveStatus } from "../lib/apps/serve/server.ts";
import type { ServeStore } from "../lib/apps/serve/server.ts";
// deno.json is not ours to change, so the test pins playwright-core inline.
// deno-lint-ignore no-import-prefix
import type { BrowserContext, Page } from "npm:playwright-core@^1";

const CHROMIUM = Deno.env.get("STORMLOCK_TEST_CHROMIUM");
const TOKEN = "browser-token-0123456789abcdef";
const ARTIFACTS = repoPath(".artifacts");
const XSS = "<img src=x onerror=alert(1)>";

if (!CHROMIUM) {
  console.warn(
    "browser_test.ts: skipped: set STORMLOCK_TEST_CHROMIUM=/usr/bin/chromium (apt-get install chromium) to run the page tests",
  );
}

const browserTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({
    name,
    ignore: !CHROMIUM,
    // playwright's pipes to the browser outlive a test by a tick.
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });

/** A headless Chromium with a fresh profile; `await using` closes it. */
async function openBrowser(): Promise<
  { context: BrowserContext; page: Page; dialogs: string[] } & AsyncDisposable
> {
  // Imported only when a browser is there, so a skipped run fetches nothing.
  // deno-lint-ignore no-import-prefix
  const { chromium } = await import("npm:playwright-core@^1");
  const profile = Deno.makeTempDirSync({ prefix: "stormlock-chromium-" });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1200, height: 760 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  const dialogs: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  return {
    context,
    page,
    dialogs,
    async [Symbol.asyncDispose]() {
      await context.close().catch(() => {});
      Deno.removeSync(profile, { recursive: true });
    },
  };
}

/** Starts `stormlock serve` through the launcher and waits for its URL. */
async function spawnServe(home: CliHome, args: string[]) {
  const child = home.spawn(["serve", ...args]);
  const url = (await child.stderrMatch(/serving (http:\/\/\S+)/))?.[1];
  if (url === undefined) {
    await child.stop();
    throw new Error(`serve did not start:\n${child.output.stderr}`);
  }
  return {
    url,
    get stderr() {
      return child.output.stderr;
    },
    [Symbol.asyncDispose]: () => child[Symbol.asyncDispose](),
  };
}

function row(page: Page, resource: string) {
  return page.locator(`#rows tr[data-resource="${resource}"]`);
}

async function signIn(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await page.locator("#token-input").waitFor({ state: "visible" });
  await page.locator("#token-input").fill(TOKEN);
  await page.keyboard.press("Enter");
  await page.locator("#status.live").waitFor();
}

browserTest(
  "browser: the page shows CLI locks live, with history, escaping and a break",
  async () => {
    using home = new CliHome();
    const deploy = await home.run([
      "acquire",
      "--ttl",
      "2h",
      "-r",
      "release 4.2",
      "--link",
      "https://ci.example/run/42",
      "web/deploy",
    ]);
    assert.equal(deploy.code, 0, deploy.stderr);
    const deployId = deploy.stdout.trim();
    assert.equal((await home.run(["acquire", "-r", XSS, "xss"])).code, 0);
    await using server = await spawnServe(home, [
      "--listen",
      "127.0.0.1:0",
      "--token",
      TOKEN,
      "--allow-break",
    ]);
    await using browser = await openBrowser();
    const { page, dialogs } = browser;

    // The token is asked for once, then kept for the tab.
    await signIn(page, server.url);
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem("stormlock.token")),
      TOKEN,
    );
    await page.evaluate(() =>
      (globalThis as Record<string, unknown>).marker = 1
    );

    // A lock taken with the CLI is shown, its reason a link to its CI run.
    const deployRow = row(page, "web/deploy");
    await deployRow.waitFor();
    assert.match(await deployRow.innerText(), /tester@/);
    const link = deployRow.locator("td.reason a");
    assert.equal(await link.getAttribute("href"), "https://ci.example/run/42");
    assert.equal(await link.innerText(), "release 4.2");
    assert.equal(await deployRow.locator("td.num").innerText(), "1");
    const since = deployRow.locator("time.since");
    assert.match(await since.innerText(), /s ago$/);
    assert.ok((await since.getAttribute("title"))!.length > 10, "local time");

    // Its countdown runs.
    const expires = deployRow.locator("time.expires");
    const before = await expires.innerText();
    assert.match(before, /^in 1:59:\d\d$/);
    await page.waitForFunction(
      (text) =>
        document.querySelector("#rows tr time.expires")?.textContent !== text,
      before,
      { timeout: 5000 },
    );

    // A hostile reason is text, and nothing ran.
    const xssRow = row(page, "xss");
    assert.equal(await xssRow.locator("td.reason").innerText(), XSS);
    assert.equal(await page.locator("#rows img").count(), 0);

    // Keyboard: "/" focuses the filter, which narrows the rows.
    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("/");
    assert.equal(
      await page.evaluate(() => document.activeElement?.id),
      "filter",
    );
    await page.keyboard.type("deploy");
    assert.equal(await page.locator("#rows tr").count(), 1);
    assert.match(await page.locator("#count").innerText(), /1 of 2/);
    await page.locator("#filter").fill("");
    assert.equal(await page.locator("#rows tr").count(), 2);

    // A new holder appears, and a release disappears, without a reload.
    const fresh = await home.run(["acquire", "-r", "hotfix", "web/new"], {
      USER: "bob",
    });
    await row(page, "web/new").waitFor({ timeout: 5000 });
    assert.match(await row(page, "web/new").innerText(), /bob@/);
    await home.run(["release", "web/new", fresh.stdout.trim()], {
      USER: "bob",
    });
    await row(page, "web/new").waitFor({ state: "detached", timeout: 5000 });
    assert.equal(
      await page.evaluate(() => (globalThis as Record<string, unknown>).marker),
      1,
      "the page was not reloaded",
    );

    // The history view lists the resource's events.
    await deployRow.locator("td.resource a").focus();
    await page.keyboard.press("Enter");
    await page.locator("#history").waitFor({ state: "visible" });
    await page.locator("#history-list li").first().waitFor();
    assert.equal(
      await page.locator("#history-resource").innerText(),
      "web/deploy",
    );
    assert.equal(
      await page.locator("#history-list li").first().getAttribute("data-kind"),
      "acquired",
    );
    assert.equal(
      await page.evaluate(() => document.activeElement?.id),
      "history-title",
    );

    // Screenshots, light and dark, wide and phone-sized.
    Deno.mkdirSync(ARTIFACTS, { recursive: true });
    await page.evaluate(() => (document.activeElement as HTMLElement)?.blur());
    for (const scheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.setViewportSize({ width: 1200, height: 760 });
      await page.screenshot({
        path: join(ARTIFACTS, `serve-${scheme}.png`),
        fullPage: true,
      });
      await page.setViewportSize({ width: 390, height: 844 });
      assert.equal(
        await page.locator("#locks thead").evaluate((head) =>
          getComputedStyle(head).position
        ),
        "absolute",
        "cards on a phone",
      );
      await page.screenshot({
        path: join(ARTIFACTS, `serve-${scheme}-phone.png`),
        fullPage: true,
      });
    }
    await page.setViewportSize({ width: 1200, height: 760 });
    await page.emulateMedia({ colorScheme: "light" });
    await page.locator("#history-close").click();
    await page.locator("#history").waitFor({ state: "hidden" });

    // Without the right token, a break is refused and nothing changes.
    await page.evaluate(() =>
      sessionStorage.setItem("stormlock.token", "wrong-token-0123456789")
    );
    await deployRow.getByRole("button", { name: /Break/ }).click();
    await page.locator("#break-dialog[open]").waitFor();
    await page.locator("#break-reason").fill("job died");
    await page.locator("#break-confirm").click();
    await page.waitForFunction(() =>
      /token was refused/.test(
        document.getElementById("break-error")?.textContent ?? "",
      )
    );
    assert.equal((await home.run(["is-held", "web/deploy", deployId])).code, 0);
    await page.keyboard.press("Escape");
    await page.locator("#break-dialog[open]").waitFor({ state: "detached" });
    await page.evaluate(
      (token) => sessionStorage.setItem("stormlock.token", token),
      TOKEN,
    );

    // With it, the break goes through the inline dialog, and the holder's
    // next renew exits 3 naming the page's principal.
    await deployRow.getByRole("button", { name: /Break/ }).click();
    await page.locator("#break-dialog[open]").waitFor();
    assert.match(
      await page.locator("#break-summary").innerText(),
      /web\/deploy is held by tester@/,
    );
    await page.locator("#break-reason").fill("deploy job died");
    await page.locator("#break-confirm").click();
    await page.locator("#break-dialog[open]").waitFor({ state: "detached" });
    await deployRow.waitFor({ state: "detached", timeout: 5000 });
    const renew = await home.run(["renew", "web/deploy", deployId]);
    assert.equal(renew.code, 3, renew.stderr);
    assert.match(
      renew.stderr,
      /was broken by tester@\S+ via serve at .*: deploy job died/,
    );

    assert.deepEqual(dialogs, [], "no alert, confirm or prompt opened");
  },
);

browserTest(
  "browser: a read-only server shows no break button, and refuses a break",
  async () => {
    using home = new CliHome();
    assert.equal((await home.run(["acquire", "db"])).code, 0);
    await using server = await spawnServe(home, ["--listen", "127.0.0.1:0"]);
    await using browser = await openBrowser();
    const { page } = browser;
    await page.goto(server.url);
    await row(page, "db").waitFor();
    assert.equal(await page.locator("#token-form").isVisible(), false);
    assert.equal(await page.getByRole("button", { name: /Break/ }).count(), 0);
    const status = await page.evaluate(async () => {
      const response = await fetch("/api/locks/db/break", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ id: "0".repeat(32), reason: "x" }),
      });
      return response.status;
    });
    assert.equal(status, 403);
    // The CSP's Trusted Types refuse markup from strings outright.
    const refused = await page.evaluate(() => {
      try {
        document.body.insertAdjacentHTML("beforeend", "<img src=x>");
        return "inserted";
      } catch (error) {
        return String(error);
      }
    });
    assert.match(refused, /TrustedHTML/);
  },
);

browserTest(
  "browser: a store outage shows a banner, and the page recovers",
  async () => {
    using home = new CliHome();
    const locks = new Stormlock(
      parseConfig(
        `[backend.sqlite]\npath = ${
          join(home.home, ".local", "state", "stormlock", "locks.db")
        }\n`,
      ),
      { warn() {} },
    );
    let down = false;
    const failing = () =>
      Promise.reject(
        new BackendUnavailableError(
          "Redis at 10.0.0.9:6379 refused the connection",
        ),
      );
    const store: ServeStore = {
      list: (prefix) => down ? failing() : locks.list(prefix),
      lock: (resource) => down ? failing() : locks.lock(resource),
    };
    const server = serveStatus(store, { listen: "127.0.0.1:0", pollMs: 200 });
    try {
      assert.equal((await home.run(["acquire", "cache"])).code, 0);
      await using browser = await openBrowser();
      const { page } = browser;
      await page.goto(server.url);
      await row(page, "cache").waitFor();
      assert.equal(await page.locator("#banner").isVisible(), false);
      down = true;
      await page.locator("#banner").waitFor({
        state: "visible",
        timeout: 5000,
      });
      assert.match(
        await page.locator("#banner").innerText(),
        /unavailable: Redis at 10\.0\.0\.9:6379 refused the connection/,
      );
      assert.equal(
        await row(page, "cache").count(),
        1,
        "last known locks stay",
      );
      Deno.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "serve-outage.png") });
      down = false;
      await page.locator("#banner").waitFor({ state: "hidden", timeout: 5000 });
      await page.locator("#status.live").waitFor();
    } finally {
      await server.shutdown();
      await locks.close();
      await sleep(0);
    }
  },
);

browserTest(
  "page with named tokens: shows who you are, hides others' lease ids, and offers break only to the break scope",
  async () => {
    const { createToken, TokenStore } = await import(
      "../lib/apps/serve/identity.ts"
    );
    const { openBackend } = await import("../mod.ts");
    const folder = Deno.makeTempDirSync({ prefix: "stormlock-team-page-" });
    const tokens = join(folder, "tokens.json");
    const locks = new Stormlock(
      parseConfig(
        `[default]\n[backend.sqlite]\npath = ${join(folder, "locks.db")}\n`,
      ),
      { warn() {} },
    );
    const server = serveStatus(locks, {
      listen: "127.0.0.1:0",
      tokens: new TokenStore(tokens),
      pollMs: 100,
    });
    const ann = await createToken(tokens, "ann", ["read", "acquire"]);
    const ops = await createToken(tokens, "ops", ["read", "break"]);
    const viewer = await createToken(tokens, "viewer", ["read"]);
    const annFile = join(folder, "ann.token");
    Deno.writeTextFileSync(annFile, ann);
    const client = await openBackend(
      { url: server.url, token_file: annFile },
      { name: "http", section: "backend.http" },
    );
    try {
      const lease = await client.acquire("deploy/web", "ann", 600, {
        reason: "ship",
      });
      const pageAs = async (token: string) => {
        const browser = await openBrowser();
        await browser.page.goto(server.url);
        await browser.page.locator("#token-input").waitFor({
          state: "visible",
        });
        await browser.page.locator("#token-input").fill(token);
        await browser.page.keyboard.press("Enter");
        await browser.page.locator("#status.live").waitFor();
        await row(browser.page, "deploy/web").waitFor();
        return browser;
      };
      {
        await using browser = await pageAs(ops);
        const { page } = browser;
        assert.match(
          await page.locator("#version").innerText(),
          /signed in as ops/,
        );
        assert.equal(await row(page, "deploy/web").getAttribute("data-id"), "");
        assert.ok(!(await page.content()).includes(lease.id));
        const button = row(page, "deploy/web").locator("button");
        assert.equal(await button.count(), 1);
        await button.click();
        await page.locator("#break-dialog[open]").waitFor();
        await page.locator("#break-reason").fill("stuck deploy");
        await page.locator("#break-confirm").click();
        await page.locator("#break-dialog[open]").waitFor({
          state: "detached",
        });
        await row(page, "deploy/web").waitFor({ state: "detached" });
        const [event] = await client.history("deploy/web", 1);
        assert.equal(event.kind, "broken");
        assert.equal(event.by?.principal, "ops");
      }
      const again = await client.acquire("deploy/web", "ann", 600);
      {
        await using browser = await pageAs(viewer);
        const { page } = browser;
        assert.match(
          await page.locator("#version").innerText(),
          /signed in as viewer · read-only/,
        );
        assert.equal(
          await row(page, "deploy/web").locator("button").count(),
          0,
        );
        assert.ok(!(await page.content()).includes(again.id));
      }
      {
        await using browser = await pageAs(ann);
        const { page } = browser;
        assert.equal(
          await row(page, "deploy/web").getAttribute("data-id"),
          again.id,
        );
      }
    } finally {
      await client.close();
      await server.shutdown();
      await locks.close();
      Deno.removeSync(folder, { recursive: true });
    }
  },
);
