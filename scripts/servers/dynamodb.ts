/**
 * Starts dynalite, an in-memory DynamoDB from npm, on loopback for the
 * dynamodb backend's tests. It is test-only, so it lives in its own folder,
 * `scripts/servers/dynalite`, installed by `npm ci` when missing: the
 * launcher's first run installs only Deno.
 */
import { join } from "node:path";
import { freePort, hasCommand, log, run, waitUntil } from "./_server.ts";
import type { StartedServer } from "./_server.ts";

import { Daemon, type FaultServer, until } from "./_daemon.ts";

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
/** dynalite answers a plain GET with "healthy: …" once it listens. */
async function answers(port: number): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}`, {
    signal: AbortSignal.timeout(1000),
  });
  const body = await response.text();
  if (!body.startsWith("healthy")) throw new Error(body);
}

export async function start(workDir: string): Promise<StartedServer> {
  Deno.mkdirSync(workDir, { recursive: true });
  await installDynalite();
  const port = freePort();
  const daemon = new Daemon(
    "dynalite",
    "node",
    [dynalite, "--host", "127.0.0.1", "--port", String(port)],
    join(workDir, "dynalite.log"),
  );
  daemon.start();
  const endpoint = `http://127.0.0.1:${port}`;
  try {
    await waitUntil("dynalite", () => answers(port));
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return {
    env: { STORMLOCK_TEST_DYNAMODB_ENDPOINT: endpoint },
    stop: () => daemon.stop(),
  };
}

// A dedicated server for the fault suite.

/** Whether dynalite is installed in scripts/servers/dynalite. */
export function hasDynalite(): boolean {
  return hasCommand(dynalite);
}

/**
 * Starts dynalite on loopback with its LevelDB store on disk (`--path`),
 * so that tables and items survive a kill.
 *
 * @param dir An empty folder for the store and the log.
 * @returns The running server.
 */
export async function startDynalite(dir: string): Promise<FaultServer> {
  Deno.mkdirSync(dir, { recursive: true });
  const port = freePort();
  const daemon = new Daemon("dynalite", "node", [
    dynalite,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--path",
    join(dir, "store"),
    "--createTableMs",
    "0",
  ], join(dir, "dynalite.log"));
  const start = async () => {
    daemon.start();
    await until("dynalite answering", () => answers(port));
  };
  await start();
  return {
    backend: "dynamodb",
    port,
    options: (at = port) => ({
      endpoint: `http://127.0.0.1:${at}`,
      region: "us-east-1",
      table: "stormlock_faults",
      access_key_id: "AKIAFAULTTESTS000000",
      secret_access_key: "fault-tests-secret",
    }),
    pause: () => daemon.pause(),
    resume: () => daemon.resume(),
    kill: () => daemon.kill(),
    start,
    close: async () => {
      await daemon.kill();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}
