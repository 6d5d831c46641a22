/**
 * What the server layer logs through: the subset of pino's Logger it uses (the CLI hands it a pino logger whose
 * every line carries the node id). One line per event; lines about a call carry its `callId`.
 */
export interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
  isLevelEnabled(level: string): boolean;
}

const noop = (): void => {};

/** Logs nothing (library use, unit tests). */
export const SILENT_LOG: Log = { info: noop, warn: noop, error: noop, debug: noop, isLevelEnabled: () => false };
