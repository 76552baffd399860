/**
 * The layers, read from Deno's own module graph: the kit (lib/kit/)
 * imports nothing above it; backends stand only on the kit; the
 * composition layer (lib/*.ts) never reaches up to the CLI or tests; and
 * no local import cycle exists.
 */
import assert from "assert";
import { repoPath, runDeno } from "./helpers.ts";

interface Graph {
  modules: {
    specifier: string;
    dependencies?: { specifier: string; code?: { specifier: string } }[];
  }[];
}

const root = `file://${repoPath()}`.replace(/\/?$/, "/");

/** Local imports, as repository paths: importer → imported. */
async function localEdges(): Promise<Map<string, Set<string>>> {
  const edges = new Map<string, Set<string>>();
  // Backends are entries too: the registry imports them by a template
  // literal, which Deno does not follow.
  const backends = [...Deno.readDirSync(repoPath("backends"))]
    .filter((entry) => entry.name.endsWith(".ts"))
    .map((entry) => `backends/${entry.name}`);
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
      for (const dependency of module.dependencies ?? []) {
        const to = dependency.code?.specifier;
        if (to?.startsWith(root)) targets.add(to.slice(root.length));
      }
      edges.set(from, targets);
    }
  }
  return edges;
}

const edges = await localEdges();

function layerOf(path: string): string {
  if (path.startsWith("lib/kit/")) return "kit";
  if (path.startsWith("backends/")) return "backends";
  if (path.startsWith("lib/testing/")) return "testing";
  if (path.startsWith("lib/")) return "composition";
  return path;
}

/** What each layer may import, besides npm: and node: modules. */
const ALLOWED: Record<string, string[]> = {
  kit: ["kit"],
  backends: ["kit"],
  composition: ["kit", "composition", "backends"],
  testing: ["kit", "composition", "backends", "testing"],
  "mod.ts": ["kit", "composition", "backends"],
  "main.ts": ["kit", "composition", "backends", "mod.ts"],
};

/** A backend's own client, in the file beside it (`redis_client.ts`). */
function ownClient(from: string, to: string): boolean {
  return to === from.replace(/\.ts$/, "_client.ts");
}

Deno.test("layers: no import runs back up", () => {
  const violations: string[] = [];
  for (const [from, targets] of edges) {
    const allowed = ALLOWED[layerOf(from)];
    if (!allowed) continue;
    for (const to of targets) {
      if (ownClient(from, to)) continue;
      if (!allowed.includes(layerOf(to))) violations.push(`${from} → ${to}`);
    }
  }
  assert.deepEqual(violations, []);
  assert.ok(edges.has("lib/kit/backend.ts"), "the graph was read");
  assert.ok(edges.has("backends/sqlite.ts"), "the backends were read");
});

Deno.test("layers: no backend imports config discovery, INI, plugins, the registry or Lock", () => {
  for (const [from, targets] of edges) {
    if (!from.startsWith("backends/")) continue;
    for (const to of targets) {
      if (ownClient(from, to)) continue;
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
