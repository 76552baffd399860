// Placeholder until the etcd backend lands (issue 3).
import { ConfigError } from "../lib/errors.ts";
import type { Backend } from "../lib/types.ts";

export function createBackend(): Backend {
  throw new ConfigError('The "etcd" backend is not built yet');
}
