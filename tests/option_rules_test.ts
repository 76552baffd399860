import assert from "assert";
import { join } from "node:path";
import {
  maskOptionValue,
  type OptionSchema,
  parseOptions,
  scrubSecrets,
  secretValues,
  urlPemFiles,
} from "../lib/kit/options.ts";
import { ConfigError } from "../lib/kit/errors.ts";
import { maskSecret } from "../lib/apps/output/report.ts";
import { backend as dynamodb } from "../backends/dynamodb/mod.ts";
import { backend as etcd } from "../backends/etcd/mod.ts";
import { backend as postgres } from "../backends/postgres/mod.ts";

const context = (configDir?: string) => ({
  name: "x",
  section: "backend.x",
  configPath: configDir ? join(configDir, "s.cfg") : "/etc/s.cfg",
  configDir,
});

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

Deno.test("options: secret values are listed once, URL passwords included, and scrubbed", () => {
  const options: OptionSchema["options"] = {
    password: { kind: "text", secret: true, doc: "" },
    user: { kind: "text", doc: "" },
    url: { kind: "url", schemes: ["redis:"], doc: "" },
  };
  const settings = parseOptions({ options }, {
    password: "hunter2",
    user: "ann",
    url: "redis://ann:p%40ss@h:6379/0",
  }, context());
  assert.deepEqual(secretValues(options, settings), [
    "hunter2",
    "p%40ss",
    "p@ss",
  ]);
  assert.equal(
    scrubSecrets(
      "ann failed with hunter2 and p@ss",
      secretValues(options, settings),
    ),
    "ann failed with *** and ***",
  );
});

Deno.test("options: masking follows the declaration; a name alone counts only without a schema", () => {
  const spec = { kind: "text", secret: true, doc: "" } as const;
  assert.equal(maskOptionValue("api_key", "abc", spec), "****");
  assert.equal(maskOptionValue("api_key", "abc"), "abc");
  assert.equal(maskOptionValue("password", "abc"), "****");
  assert.equal(
    maskOptionValue("password", "abc", { kind: "text", doc: "" }),
    "abc",
  );
  assert.equal(
    maskOptionValue("url", "postgres://u:p@h/db", { kind: "text", doc: "" }),
    "postgres://u:****@h/db",
  );
  // Built-in backends declare what the report masks.
  assert.equal(maskSecret("password", "x", etcd.schema.options), "****");
  for (const key of ["access_key_id", "secret_access_key"]) {
    assert.equal(maskSecret(key, "x", dynamodb.schema.options), "****");
  }
  assert.equal(maskSecret("prefix", "/p/", etcd.schema.options), "/p/");
});

Deno.test("options: insteadOf wants exactly one of the two", () => {
  const schema: OptionSchema = {
    options: {
      url: { kind: "text", doc: "The server." },
      connection: { kind: "text", insteadOf: "url", doc: "Its old name." },
    },
  };
  assert.equal(
    parseOptions(schema, { connection: "db" }, context()).connection,
    "db",
  );
  assert.equal(parseOptions(schema, { url: "db" }, context()).url, "db");
  assert.throws(
    () => parseOptions(schema, { url: "a", connection: "b" }, context()),
    (error: Error) =>
      error instanceof ConfigError &&
      /\[backend\.x\] connection: set url or connection, not both/.test(
        error.message,
      ),
  );
  assert.throws(
    () => parseOptions(schema, { url: " " }, context()),
    (error: Error) =>
      error instanceof ConfigError &&
      /\[backend\.x\] url: required; set url \(or connection\)/.test(
        error.message,
      ),
  );
  // postgres declares it for url and connection.
  assert.equal(postgres.schema.options.connection.insteadOf, "url");
});

Deno.test("options: PEM files named in URL parameters are read, checked and kept", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(join(dir, "ca.pem"), PEM);
    Deno.writeTextFileSync(join(dir, "bad.pem"), "not a certificate\n");
    const schema: OptionSchema = {
      options: {
        url: {
          kind: "url",
          schemes: ["postgres:"],
          pemParams: ["sslrootcert", "sslcert"],
          pemKeywords: ["system"],
          doc: "",
        },
      },
    };
    const parse = (url: string) =>
      parseOptions(schema, { url }, context(dir)).url as URL;
    const url = parse("postgres://h/db?sslrootcert=ca.pem");
    assert.deepEqual(
      urlPemFiles(url, ["sslrootcert", "sslcert"], "url", context(dir)),
      { sslrootcert: PEM },
    );
    assert.deepEqual(
      urlPemFiles(
        parse("postgres://h/db?sslrootcert=system"),
        ["sslrootcert"],
        "url",
        context(dir),
      ),
      {},
    );
    assert.throws(
      () => parse("postgres://h/db?sslcert=bad.pem"),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message.includes("url: sslcert file ") &&
        error.message.includes("is not a PEM file"),
    );
    assert.throws(
      () => parse("postgres://h/db?sslrootcert=missing.pem"),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message.includes("url: cannot read sslrootcert file "),
    );
    // A URL the backend built itself is read on demand.
    assert.deepEqual(
      urlPemFiles(
        new URL("postgres://h/db?sslcert=ca.pem"),
        ["sslcert"],
        "connection",
        context(dir),
      ),
      { sslcert: PEM },
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
