/** Test TLS material: a throwaway CA and a certificate for 127.0.0.1. */
import assert from "assert";
import { join } from "node:path";

/** A CA file for clients, and the server's certificate and key (PEM). */
export interface TestCertificates {
  /** Path of the CA certificate, for `--cert` or a CA bundle. */
  ca: string;
  /** The server certificate for 127.0.0.1, signed by the CA. */
  cert: string;
  /** The server's private key. */
  key: string;
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const output = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
}

/** Makes a CA and a certificate for 127.0.0.1 signed by it, in `dir`. */
export async function testCertificates(dir: string): Promise<TestCertificates> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  const days = ["-days", "1"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    ...days,
    "-subj",
    "/CN=Stormlock test CA",
  );
  await openssl(
    dir,
    "req",
    ...ec,
    "-nodes",
    "-keyout",
    "key.pem",
    "-out",
    "leaf.csr",
    "-subj",
    "/CN=127.0.0.1",
  );
  Deno.writeTextFileSync(
    join(dir, "leaf.ext"),
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    ...days,
    "-extfile",
    "leaf.ext",
  );
  return {
    ca: join(dir, "ca.pem"),
    cert: Deno.readTextFileSync(join(dir, "cert.pem")),
    key: Deno.readTextFileSync(join(dir, "key.pem")),
  };
}

/** Serves `body` over HTTPS on 127.0.0.1 with the test certificate. */
export function serveTls(
  certificates: TestCertificates,
  body: string,
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      cert: certificates.cert,
      key: certificates.key,
      onListen() {},
    },
    () =>
      new Response(body, {
        headers: { "content-type": "application/javascript" },
      }),
  );
}
