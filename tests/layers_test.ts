/**
 * The floors, read from Deno's own module graph. From the ground up:
 *
 * 1. `lib/kit/`: the backend kit; imports nothing above it.
 * 2. `backends/<store>/`: one folder per store, standing only on the kit
 *    and on files of its own folder.
 * 3. `lib/composition/`: config, INI, plugins, the registry, Lock, the
 *    queue, hold, events and watch. The registry's lazy import of
 *    `backends/<store>/mod.ts` is the one arrow into floor 2 from here,
 *    and it points down.
 * 4. `lib/apps/`: run, serve, notifications and output formatting.
 * 5. `main.ts`: the CLI. `mod.ts` (the library) and `lib/testing/` (the
 *    contract suite) stand beside the apps.
 *
 * No import runs back up a floor, and no local import cycle exists.
 */
import assert from "assert";
import { repoPath, runDeno } from "./helpers.ts";

interface Graph {
  modules: {
    specifier: string;
    dependencies?: {
      specifier: string;
      code?: { specifier: string };
      type?: { specifier: string };
    }[];
  }[];
}

const root = `file://${repoPath()}`.replace(/\/?$/, "/");

/** Local imports, as repository paths: importer → imported. */
async function localEdges(): Promise<Map<string, Set<string>>> {
  const edges = new Map<string, Set<string>>();
  // Backends are entries too: the registry imports them by a template
  // literal, which Deno does not follow.
  const backends = [...Deno.readDirSync(repoPath("backends"))]
    .filter((entry) => entry.isDirectory)
    .map((entry) => `backends/${entry.name}/mod.ts`);
  for (
    const entry of [
      "main.ts",
      "mod.ts",
      "lib/kit/mod.ts",
      "lib/testing/mod.ts",
      ...backends,
    ]
  ) {
    const { code, stdout, stderr } = await runDeno(["info", "--json", entry]);
    assert.equal(code, 0, stderr);
    const graph: Graph = JSON.parse(stdout);
    for (const module of graph.modules) {
      if (!module.specifier.startsWith(root)) continue;
      const from = module.specifier.slice(root.length);
      const targets = edges.get(from) ?? new Set<string>();
      // Type-only imports count too: a cycle of types is still a cycle.
      for (const dependency of module.dependencies ?? []) {
        for (
          const to of [dependency.code?.specifier, dependency.type?.specifier]
        ) {
          if (to?.startsWith(root)) targets.add(to.slice(root.length));
        }
      }
      edges.set(from, targets);
    }
  }
  return edges;
}

const edges = await localEdges();

/** The floor a repository path stands on, by its folder. */
function layerOf(path: string): string {
  if (path.startsWith("lib/kit/")) return "kit";
  if (path.startsWith("backends/")) return "backends";
  if (path.startsWith("lib/composition/")) return "composition";
  if (path.startsWith("lib/apps/")) return "apps";
  if (path.startsWith("lib/testing/")) return "testing";
  if (path.startsWith("lib/")) return "lib (no floor)";
  return path;
}

/** What each floor may import, besides npm: and node: modules. */
const ALLOWED: Record<string, string[]> = {
  kit: ["kit"],
  backends: ["kit"],
  composition: ["kit", "backends", "composition"],
  apps: ["kit", "backends", "composition", "apps"],
  testing: ["kit", "backends", "composition", "testing"],
  "mod.ts": ["kit", "backends", "composition", "apps"],
  "main.ts": ["kit", "backends", "composition", "apps", "mod.ts"],
};

/** A file of the backend's own folder (its client, options, errors). */
function ownFolder(from: string, to: string): boolean {
  const folder = /^backends\/[^/]+\//.exec(from)?.[0];
  return folder !== undefined && to.startsWith(folder);
}

Deno.test("layers: no import runs back up", () => {
  const violations: string[] = [];
  for (const [from, targets] of edges) {
    const allowed = ALLOWED[layerOf(from)];
    if (!allowed) continue;
    for (const to of targets) {
      if (ownFolder(from, to)) continue;
      if (!allowed.includes(layerOf(to))) violations.push(`${from} → ${to}`);
    }
  }
  assert.deepEqual(violations, []);
  assert.ok(edges.has("lib/kit/frame.ts"), "the graph was read");
  assert.ok(edges.has("backends/sqlite/mod.ts"), "the backends were read");
});

Deno.test("layers: no backend imports config discovery, INI, plugins, the registry or Lock", () => {
  for (const [from, targets] of edges) {
    if (!from.startsWith("backends/")) continue;
    for (const to of targets) {
      if (ownFolder(from, to)) continue;
      assert.match(to, /^lib\/kit\//, `${from} → ${to}`);
    }
  }
});

Deno.test("layers: no local import cycle", () => {
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (node: string, path: string[]) => {
    if (state.get(node) === "done") return;
    if (state.get(node) === "open") {
      cycles.push([...path.slice(path.indexOf(node)), node].join(" → "));
      return;
    }
    state.set(node, "open");
    for (const next of edges.get(node) ?? []) visit(next, [...path, node]);
    state.set(node, "done");
  };
  for (const node of edges.keys()) visit(node, []);
  assert.deepEqual(cycles, []);
});

Deno.test("layers: every module under lib/ and backends/ stands on a floor", () => {
  const loose: string[] = [];
  for (const top of ["lib", "backends"]) {
    for (const entry of Deno.readDirSync(repoPath(top))) {
      if (entry.isFile && /\.[cm]?[jt]sx?$/.test(entry.name)) {
        loose.push(`${top}/${entry.name}`);
      }
    }
  }
  assert.deepEqual(loose, [], "move each into the folder of its floor");
  for (const path of edges.keys()) {
    if (path.startsWith("lib/") || path.startsWith("backends/")) {
      assert.notEqual(layerOf(path), "lib (no floor)", path);
    }
  }
});

Deno.test("layers: no backend file is over 650 lines; a store that grows splits by concern", () => {
  const long: string[] = [];
  for (const store of Deno.readDirSync(repoPath("backends"))) {
    if (!store.isDirectory) continue;
    for (const file of Deno.readDirSync(repoPath("backends", store.name))) {
      if (!file.name.endsWith(".ts")) continue;
      const path = `backends/${store.name}/${file.name}`;
      const lines = Deno.readTextFileSync(repoPath(path)).split("\n").length;
      if (lines > 650) long.push(`${path}: ${lines} lines`);
    }
  }
  assert.deepEqual(long, []);
});
