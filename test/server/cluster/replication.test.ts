import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MOBICENTS_REPLICATION_PROPERTY, parseReplicationStrategy, REPLICATION_STRATEGIES } from '../../../src/server/cluster/replication.ts';

test('the three strategies, in any case and with surrounding blanks', () => {
  assert.deepEqual([...REPLICATION_STRATEGIES], ['ConfirmedDialog', 'EarlyDialog', 'None']);
  const cases: Array<[string, string]> = [
    ['ConfirmedDialog', 'ConfirmedDialog'], ['confirmeddialog', 'ConfirmedDialog'], ['CONFIRMEDDIALOG', 'ConfirmedDialog'], ['cOnFiRmEdDiAlOg', 'ConfirmedDialog'],
    ['EarlyDialog', 'EarlyDialog'], ['earlydialog', 'EarlyDialog'], ['EARLYDIALOG', 'EarlyDialog'],
    ['None', 'None'], ['none', 'None'], ['NONE', 'None'],
    ['  EarlyDialog ', 'EarlyDialog'], ['\tnone\n', 'None'],
  ];
  for (const [text, want] of cases) assert.equal(parseReplicationStrategy(text), want, JSON.stringify(text));
});

test('the Java stack\'s property line (Restcomm / JAIN-SIP HA) is accepted as written in its .properties files', () => {
  assert.equal(MOBICENTS_REPLICATION_PROPERTY, 'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY');
  assert.equal(parseReplicationStrategy('org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=EarlyDialog'), 'EarlyDialog');
  assert.equal(parseReplicationStrategy('org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=ConfirmedDialog'), 'ConfirmedDialog');
  assert.equal(parseReplicationStrategy('org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=None'), 'None');
  assert.equal(parseReplicationStrategy('org.mobicents.ha.javax.sip.REPLICATION_STRATEGY = earlydialog '), 'EarlyDialog');
});

test('anything else is refused (null)', () => {
  for (const bad of [
    '', ' ', 'Early', 'Confirmed', 'Dialog', 'Full', 'all', 'ConfirmedDialogs', 'Early Dialog', 'Early-Dialog', 'null', '0',
    'EarlyDialog=', '=EarlyDialog', 'REPLICATION_STRATEGY=EarlyDialog', 'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=',
    'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=Full', 'org.mobicents.ha.javax.sip.replication_strategy=EarlyDialog',
    'org.mobicents.ha.javax.sip.OTHER=EarlyDialog', 'org.mobicents.ha.javax.sip.REPLICATION_STRATEGY=EarlyDialog=None',
  ]) {
    assert.equal(parseReplicationStrategy(bad), null, JSON.stringify(bad));
  }
});
