// The HTTP wire module (dist/peer/wire.js) both ends import: every path the
// client builds parses back, on the server's parser, to the route it names;
// malformed targets get the 4xx the protocol documents.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {
  asksFetchThrough,
  bearer,
  manifestPath,
  MAX_URL_LENGTH,
  MISSING_ROUTE,
  objectPath,
  parseBearer,
  parseTarget,
  profilePath,
  REF_LIST_ROUTE,
  refPath,
  refSignaturePath,
} from '../../dist/peer/wire.js'

const ID = 'ab' + 'c'.repeat(62)

test('a path the client builds parses to the route it names', () => {
  assert.equal(parseTarget('/' + objectPath(ID)), {route: {kind: 'object', id: ID}})
  assert.equal(parseTarget('/' + manifestPath(ID)), {route: {kind: 'manifest', id: ID}})
  assert.equal(parseTarget('/' + profilePath(ID)), {route: {kind: 'profile', id: ID}})
  assert.equal(parseTarget('/' + refPath('debian', '12')), {route: {kind: 'ref', name: 'debian', tag: '12'}})
  assert.equal(parseTarget('/' + refSignaturePath('debian', '12')), {route: {kind: 'signature', name: 'debian', tag: '12'}})
  assert.is(refSignaturePath('debian', '12'), 'sigs/debian/12')
  assert.equal(parseTarget('/' + MISSING_ROUTE), {route: {kind: 'missing'}})
  assert.equal(parseTarget('/' + REF_LIST_ROUTE), {route: {kind: 'refs'}})
  assert.equal(parseTarget('/healthz'), {route: {kind: 'healthz'}})
  assert.equal(parseTarget('/metrics'), {route: {kind: 'metrics'}})
  assert.is(objectPath(ID), `objects/ab/${'c'.repeat(62)}`)
})

test('malformed targets are refused before any lookup', () => {
  assert.is(parseTarget('/' + 'a'.repeat(MAX_URL_LENGTH)).status, 414)
  assert.is(parseTarget('/objects/ab/' + 'c'.repeat(61)).status, 400)
  assert.is(parseTarget('/objects/AB/' + 'c'.repeat(62)).status, 400)
  assert.match(parseTarget('/manifests/ab').reason, /malformed manifest path/)
  assert.is(parseTarget('/refs/a/../b').status, 400)
  assert.is(parseTarget('/refs/%2e%2e/x').status, 400)
  assert.is(parseTarget('/refs/a/b?x=1').status, 400)
  assert.is(parseTarget('//refs/a/b').status, 400)
  assert.is(parseTarget('refs/a/b').status, 400)
  assert.is(parseTarget('/sigs/a/../b').status, 400)
  assert.is(parseTarget('/sigs/a/b/c').status, 400)
  assert.match(parseTarget('/sigs/a').reason, /malformed signature path/)
  assert.is(parseTarget('/v1/objects').status, 404)
  // names of Object.prototype are no routes
  assert.is(parseTarget('/constructor').status, 404)
  assert.is(parseTarget('/__proto__').status, 404)
})

test('the fetch-through header and the bearer token read back what was written', () => {
  assert.ok(asksFetchThrough(' Upstream '))
  assert.not.ok(asksFetchThrough(undefined))
  assert.not.ok(asksFetchThrough('peer'))
  assert.is(parseBearer(bearer('s3cret')), 's3cret')
  assert.is(parseBearer('bearer   tok '), 'tok')
  assert.is(parseBearer('Basic dXNlcg=='), undefined)
  assert.is(parseBearer(undefined), undefined)
})

test.run()
