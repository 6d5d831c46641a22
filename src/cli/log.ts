import { destination, pino, stdTimeFunctions, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

/**
 * The process's logger: pino JSON on stdout, one line per event, ISO time and level names, every line carrying
 * `node` (a node's id, or "balancer"/"supervisor"). Written synchronously: lines are few (per-call lines are
 * debug), and a line written just before a crash or exit must not be lost.
 */
export function createLog(node: string, level: LogLevel = 'info'): Logger {
  return pino({
    level,
    base: { node },
    timestamp: stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, destination({ dest: 1, sync: true }));
}
