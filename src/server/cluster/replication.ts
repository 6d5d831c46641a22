/** How much of a call is replicated so another node can continue it (see the failover issue). */
export type ReplicationStrategy = 'ConfirmedDialog' | 'EarlyDialog' | 'None';

export const REPLICATION_STRATEGIES: readonly ReplicationStrategy[] = ['ConfirmedDialog', 'EarlyDialog', 'None'];

/** The Java stack's property (Restcomm / JAIN-SIP HA), accepted as written in its .properties files. */
export const MOBICENTS_REPLICATION_PROPERTY = 'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY';

/**
 * Reads a strategy: `ConfirmedDialog`, `EarlyDialog`, `None` (any case), or the Java form
 * `org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=EarlyDialog`. Null when it is none of them.
 */
export function parseReplicationStrategy(text: string): ReplicationStrategy | null {
  let value = text.trim();
  const eq = value.indexOf('=');
  if (eq !== -1) {
    if (value.slice(0, eq).trim() !== MOBICENTS_REPLICATION_PROPERTY) return null;
    value = value.slice(eq + 1).trim();
  }
  return REPLICATION_STRATEGIES.find((s) => s.toLowerCase() === value.toLowerCase()) ?? null;
}
