import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeHa1 } from '../../src/store/credentials.ts';

test('HA1 of the RFC 2617 §3.5 example user', () => {
  // Known values for Mufasa / testrealm@host.com / Circle Of Life, published with RFC 2617's and RFC 7616's examples.
  assert.equal(computeHa1('MD5', 'Mufasa', 'testrealm@host.com', 'Circle Of Life'), '939e7578ed9e3c518a452acee763bce9');
  assert.equal(computeHa1('MD5', 'bob', 'biloxi.com', 'zanzibar').length, 32);
  assert.equal(computeHa1('SHA-256', 'bob', 'biloxi.com', 'zanzibar').length, 64);
});

test('HA1 hashes the UTF-8 bytes', () => {
  assert.notEqual(computeHa1('MD5', 'jürgen', 'r', 'p'), computeHa1('MD5', 'jurgen', 'r', 'p'));
});
