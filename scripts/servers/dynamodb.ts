/**
 * Starts dynalite, an in-memory DynamoDB from npm, on loopback for the
 * dynamodb backend's tests. It is test-only, so it lives in its own folder,
 * `scripts/servers/dynalite`, installed by `npm ci` when missing: the
 * launcher's first run installs only Deno.
 */
import { join } from "node:path";
import {
  freePort,
  hasCommand,
  log,
  run,
  spawnDaemon,
  stopDaemon,
  waitUntil,
} from "./_server.ts";
import type { StartedServer } from "./_server.ts";

/** The server's short name. */
export const name = "dynamodb";

const folder = new URL("./dynalite", import.meta.url).pathname;
/** The dynalite command, once installed. */
export const dynalite = join(folder, "node_modules", ".bin", "dynalite");

/** Installs dynalite into its folder, if it is missing. */
export async function installDynalite(): Promise<void> {
  if (hasCommand(dynalite)) return;
  log("installing dynalite with npm ci in scripts/servers/dynalite");
  await run("npm", [
    "ci",
    "--prefix",
    folder,
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
  ]);
}

/** Starts dynalite and returns `STORMLOCK_TEST_DYNAMODB_ENDPOINT`. */
export async function start(workDir: string): Promise<StartedServer> {
  Deno.mkdirSync(workDir, { recursive: true });
  await installDynalite();
  const port = freePort();
  const child = spawnDaemon(
    "node",
    [dynalite, "--host", "127.0.0.1", "--port", String(port)],
    join(workDir, "dynalite.log"),
  );
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    // dynalite answers a plain GET with "healthy: …" once it listens.
    await waitUntil("dynalite", async () => {
      const response = await fetch(endpoint);
      const body = await response.text();
      if (!body.startsWith("healthy")) throw new Error(body);
    });
  } catch (error) {
    await stopDaemon(child);
    throw error;
  }
  return {
    env: { STORMLOCK_TEST_DYNAMODB_ENDPOINT: endpoint },
    stop: () => stopDaemon(child),
  };
}
