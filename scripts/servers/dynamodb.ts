/**
 * Starts dynalite, an in-memory DynamoDB from npm, on loopback for the
 * dynamodb backend's tests. It comes with the Deno bootstrap in
 * `scripts/.deno`, installed by `npm install` when missing.
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

const bootstrap = new URL("../.deno", import.meta.url).pathname;
const dynalite = join(bootstrap, "node_modules", ".bin", "dynalite");

/** Starts dynalite and returns `STORMLOCK_TEST_DYNAMODB_ENDPOINT`. */
export async function start(workDir: string): Promise<StartedServer> {
  Deno.mkdirSync(workDir, { recursive: true });
  if (!hasCommand(dynalite)) {
    log("installing dynalite with npm install in scripts/.deno");
    await run("npm", [
      "install",
      "--no-save",
      "--prefix",
      bootstrap,
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
    ]);
  }
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
