// The SigV4 signer of S3Store against AWS's published example (the S3 API
// reference, "Signature Calculations for the Authorization Header", GET
// Object with a Range header), and the key encoding it relies on.
import {test} from 'uvu'
import * as assert from 'uvu/assert'
import {canonicalQuery, EMPTY_SHA256, sha256Hex, signRequest, uriEncode} from '../../dist/peer/s3/sigv4.js'

const EXAMPLE = {
  credentials: {accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'},
  region: 'us-east-1',
  date: new Date('2013-05-24T00:00:00Z'),
  host: 'examplebucket.s3.amazonaws.com',
}

test("GET Object with a Range: AWS's example signature", () => {
  const h = signRequest({...EXAMPLE, method: 'GET', path: '/test.txt', headers: {range: 'bytes=0-9'}, payloadHash: EMPTY_SHA256})
  assert.is(
    h.authorization,
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  )
  assert.is(h['x-amz-date'], '20130524T000000Z')
  assert.is(h['x-amz-content-sha256'], EMPTY_SHA256)
})

test("GET Bucket lifecycle (a query string): AWS's example signature", () => {
  const h = signRequest({...EXAMPLE, method: 'GET', path: '/', query: {lifecycle: ''}, payloadHash: EMPTY_SHA256})
  assert.match(h.authorization, /Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543$/)
})

test("GET Bucket (list objects): AWS's example signature", () => {
  const h = signRequest({...EXAMPLE, method: 'GET', path: '/', query: {'max-keys': '2', prefix: 'J'}, payloadHash: EMPTY_SHA256})
  assert.match(h.authorization, /Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7$/)
})

test('a session token is sent and signed', () => {
  const h = signRequest({...EXAMPLE, credentials: {...EXAMPLE.credentials, sessionToken: 'TOKEN'}, method: 'GET', path: '/k', payloadHash: EMPTY_SHA256})
  assert.is(h['x-amz-security-token'], 'TOKEN')
  assert.match(h.authorization, /SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,/)
})

test('keys are encoded as SigV4 wants: unreserved kept, the rest percent-encoded, slashes kept in paths', () => {
  assert.is(uriEncode('refs/app/v1', true), 'refs/app/v1')
  assert.is(uriEncode("a b!'()*~._-", true), "a%20b%21%27%28%29%2A~._-")
  assert.is(uriEncode('a/b'), 'a%2Fb')
  assert.is(canonicalQuery({prefix: 'p/objects/ab/', 'list-type': '2'}), 'list-type=2&prefix=p%2Fobjects%2Fab%2F')
  assert.is(sha256Hex(''), EMPTY_SHA256)
})

test.run()
