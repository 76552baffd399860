/** Every relative link and anchor in README.md, CONTRIBUTING.md and docs/ resolves. */
import assert from "assert";
import { join } from "node:path";
import { repoPath } from "./helpers.ts";
import {
  anchorsOf,
  brokenLinks,
  headingAnchor,
  markdownFiles,
} from "../scripts/doc_links.ts";

Deno.test("every relative link and anchor in the README and docs/ resolves", () => {
  const files = markdownFiles(repoPath());
  for (const page of ["README.md", "CONTRIBUTING.md", "docs/commands.md"]) {
    assert.ok(files.includes(page), `${page} is checked`);
  }
  const broken = brokenLinks(repoPath()).map((
    { file, line, target, problem },
  ) => `${file}:${line}: ${target}: ${problem}`);
  assert.deepEqual(broken, []);
});

Deno.test("the README links every docs page", () => {
  const readme = Deno.readTextFileSync(repoPath("README.md"));
  const unlinked = markdownFiles(repoPath())
    .filter((file) => file.startsWith("docs/"))
    .filter((file) => !readme.includes(`](${file}`));
  assert.deepEqual(unlinked, [], "pages the README does not link");
});

Deno.test("the README is a landing page of at most 15 KB", () => {
  const size = Deno.statSync(repoPath("README.md")).size;
  assert.ok(size <= 15 * 1024, `README.md is ${size} bytes`);
});

Deno.test("heading anchors follow GitHub's rules", () => {
  assert.equal(
    headingAnchor("`run`: hold a lock for the life of a command"),
    "run-hold-a-lock-for-the-life-of-a-command",
  );
  assert.equal(headingAnchor("The `[serve]` section"), "the-serve-section");
  assert.equal(
    headingAnchor("OIDC for CI (GitHub Actions)"),
    "oidc-for-ci-github-actions",
  );
  assert.equal(
    headingAnchor("Waiting, in arrival order"),
    "waiting-in-arrival-order",
  );
  assert.deepEqual(
    [...anchorsOf(
      "# A\n\n## Options\n\n```\n# not a heading\n```\n\n## Options\n",
    )],
    ["a", "options", "options-1"],
  );
});

Deno.test("the link check finds a missing page, a missing anchor and a link outside", () => {
  const root = Deno.makeTempDirSync({ prefix: "stormlock-links-" });
  try {
    Deno.mkdirSync(join(root, "docs", "backends"), { recursive: true });
    Deno.writeTextFileSync(
      join(root, "README.md"),
      [
        "# Title",
        "",
        "[good](docs/a.md#part-two) [self](#title) [web](https://example.com/x)",
        "[gone](docs/missing.md) [no anchor](docs/a.md#part-three)",
        "`[code](docs/nowhere.md)` and [up](../elsewhere.md)",
        "",
        "```",
        "[fenced](docs/nowhere.md)",
        "```",
      ].join("\n"),
    );
    Deno.writeTextFileSync(
      join(root, "docs", "a.md"),
      "# A\n\n## Part two\n\n[back](../README.md#title) [deep](backends/b.md#nope)\n",
    );
    Deno.writeTextFileSync(join(root, "docs", "backends", "b.md"), "# B\n");
    const broken = brokenLinks(root).map(({ file, line, target }) =>
      `${file}:${line}: ${target}`
    );
    assert.deepEqual(broken, [
      "README.md:4: docs/missing.md",
      "README.md:4: docs/a.md#part-three",
      "README.md:5: ../elsewhere.md",
      "docs/a.md:5: backends/b.md#nope",
    ]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});
