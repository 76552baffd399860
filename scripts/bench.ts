/**
 * Start-up benchmark: is a backend's npm client evaluated only when that
 * backend is used? Runs, interleaved in one session, the CLI's `current` on
 * the embedded SQLite backend, the same with every client imported eagerly
 * first, and `--version`. Prints medians and ratios; noisy machines make
 * absolute times meaningless, so only the side-by-side ratios count.
 *
 *   deno run --allow-read --allow-write --allow-run --allow-env scripts/bench.ts [ROUNDS]
 */
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const rounds = Number(Deno.args[0] ?? 15);
const home = Deno.makeTempDirSync({ prefix: "stormlock-bench-" });
const eager = join(home, "eager.ts");
Deno.writeTextFileSync(
  eager,
  [
    'import "ioredis";',
    'import "etcd3";',
    'import "postgres";',
    'import "@aws-sdk/client-dynamodb";',
    `await import(${JSON.stringify(join(root, "main.ts"))});`,
  ].join("\n"),
);
const flags = [
  "run",
  "--quiet",
  "--allow-env",
  "--allow-sys=hostname",
  "--allow-read",
  "--allow-net",
  `--allow-write=${home}`,
  `--config=${join(root, "deno.json")}`,
];
const cases: Record<string, string[]> = {
  "--version (no backend)": [...flags, join(root, "main.ts"), "--version"],
  "current on sqlite (lazy)": [...flags, join(root, "main.ts"), "current", "x"],
  "current on sqlite, all clients eager": [...flags, eager, "current", "x"],
};

const env = { HOME: home, USER: "bench", PATH: Deno.env.get("PATH") ?? "" };
async function time(args: string[]): Promise<number> {
  const start = performance.now();
  await new Deno.Command(Deno.execPath(), {
    args,
    env,
    cwd: home,
    stdout: "null",
    stderr: "null",
  }).output();
  return performance.now() - start;
}

const samples = new Map(
  Object.keys(cases).map((name) => [name, [] as number[]]),
);
for (const args of Object.values(cases)) await time(args); // Warm caches.
for (let i = 0; i < rounds; i++) {
  for (const [name, args] of Object.entries(cases)) {
    samples.get(name)!.push(await time(args));
  }
}
const median = (values: number[]) =>
  values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];
const base = median(samples.get("current on sqlite (lazy)")!);
for (const [name, values] of samples) {
  const ms = median(values);
  console.log(
    `${name.padEnd(40)} median ${ms.toFixed(0).padStart(5)} ms  ×${
      (ms / base).toFixed(2)
    } of lazy sqlite`,
  );
}
Deno.removeSync(home, { recursive: true });
