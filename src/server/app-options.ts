/** Options the CLI passes to a bundled app's `createApp`. */
export interface AppOptions {
  /** Next hop for initial requests (`HOST:PORT`), for the proxy. */
  routeTo?: string;
  recordRoute?: boolean;
  /** How long the uas rings before answering, in ms (0: answer at once). */
  ringMs?: number;
  /** How long the uas keeps a call before hanging up itself, in ms (0: never). */
  callMs?: number;
  /** Anything else given with --option KEY=VALUE. */
  [key: string]: unknown;
}
