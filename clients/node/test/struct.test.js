// Plain objects <-> google.protobuf.Struct, the Struct guard and the learn request builder,
// without a server (the round trips through a server are in patterns.test.js).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { toStruct, fromStruct, assertStruct, learnRequest, normalizeEvent, loadPackage } = require('../src');

const nested = {
  action: 'list_workflows',
  n: 3.5,
  on: false,
  none: null,
  tags: ['a', 1, null, { deep: [true, []] }],
  inner: { x: { y: 'z' }, empty: {} },
};

test('toStruct and fromStruct round trip nested values, lists and null', () => {
  assert.deepEqual(fromStruct(toStruct(nested)), nested);
  assert.deepEqual(toStruct({ a: null }), { fields: { a: { nullValue: 'NULL_VALUE' } } });
  assert.deepEqual(toStruct({ a: undefined, b: [undefined] }), {
    fields: { b: { listValue: { values: [{ nullValue: 'NULL_VALUE' }] } } },
  });
  assert.equal(fromStruct(null), null);
});

test('a Struct made by toStruct survives the wire encoding grpc-js uses', () => {
  // The serializer proto-loader gives grpc-js, as a call uses it.
  const ser = loadPackage().hotplane.v1.Patterns.service.LearnPattern;
  const wire = ser.requestSerialize({ query: 'q', metadata: toStruct(nested) });
  const back = ser.requestDeserialize(wire);
  assert.deepEqual(fromStruct(back.metadata), nested);
  // The trap, shown: a plain object as the Struct is encoded as an empty Struct.
  const trap = ser.requestDeserialize(ser.requestSerialize({ query: 'q', metadata: { action: 'x' } }));
  assert.deepEqual(fromStruct(trap.metadata), {});
});

test('values a Struct cannot hold are refused, naming where', () => {
  assert.throws(() => toStruct({ a: { b: NaN } }), /metadata\.a\.b: NaN/);
  assert.throws(() => toStruct({ f: () => 1 }), /metadata\.f: a function/);
  assert.throws(() => toStruct({ big: 2n ** 60n }), /metadata\.big: .*metadataJson/);
  assert.deepEqual(fromStruct(toStruct({ small: 7n })), { small: 7 });
  assert.throws(() => toStruct([1]), /not an array/);
  assert.throws(() => toStruct(null), /plain object/);
});

test('assertStruct refuses a plain object given as a Struct, naming the field', () => {
  assert.throws(() => assertStruct({ action: 'x' }, 'metadata'), (e) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /^metadata: \{"action":"x"\} is not a google\.protobuf\.Struct/);
    return true;
  });
  assert.throws(() => assertStruct({ fields: 'x' }), /metadata:/);
  assert.deepEqual(assertStruct(toStruct({ a: 1 })), toStruct({ a: 1 }));
});

test('learnRequest sends a plain object as metadataJson and refuses what is not one', () => {
  assert.deepEqual(learnRequest({ query: 'q', category: 'c', confidence: 0.9, metadata: { action: 'x' } }), {
    query: 'q',
    category: 'c',
    confidence: 0.9,
    metadataAsJson: true,
    metadataJson: '{"action":"x"}',
  });
  assert.deepEqual(learnRequest({ query: 'q' }), { query: 'q', metadataAsJson: true });
  assert.throws(() => learnRequest({ query: 'q', metadata: 'x' }), /^TypeError: metadata:/);
  assert.throws(() => learnRequest({ query: 'q', metadataStruct: { action: 'x' } }), /^TypeError: metadata:/);
  assert.throws(() => learnRequest({ query: 'q', metadata: {}, metadataStruct: toStruct({}) }), /not both/);
});

test('normalizeEvent makes patternId null on events about no pattern', () => {
  assert.equal(normalizeEvent({ eventId: '4', patternId: '0' }).patternId, null);
  assert.equal(normalizeEvent({ eventId: '4', patternId: '12' }).patternId, '12');
});
