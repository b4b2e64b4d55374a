import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AppKitError } from '../../src/app-kit/index.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'
import {
  type AppServer,
  call,
  END_USER_HEADER,
  finalText,
  jwtClaims,
  type Recording,
  record,
  sendPcm,
  sleep,
  startAppServer,
  usageRecords,
} from './app-kit-fixtures.js'

const RAW = 'encoding=linear16&sample_rate=16000'
const SENTENCE = 'the quick brown fox jumps over the lazy dog'
const as = (endUser: string) => ({ [END_USER_HEADER]: endUser })

/** Streams `pcm` on an open socket, ends it with CloseStream and waits for the close. */
async function transcribe(rec: Recording, pcm: Int16Array) {
  await sendPcm(rec.ws, pcm)
  rec.ws.send(JSON.stringify({ type: 'CloseStream' }))
  return rec.closed
}

describe('app kit credentials (patterns 1 and 2) against a real Earmark', () => {
  let earmark: LiveServer
  let app: AppServer
  let audio: Int16Array

  before(async () => {
    earmark = await startLiveServer({ EARMARK_CAPACITY: '3' })
    app = await startAppServer({
      upstream: { url: earmark.url, apiKey: earmark.ownerKey },
      tokenKeyTtlSeconds: 2,
    })
    audio = concatPcm(silence(0.3), await speech(SENTENCE), silence(0.8))
  })
  after(async () => {
    await app?.close()
    await earmark?.close()
  })

  it('pattern 1: POST /key mints a usage:write key for the end user that transcribes directly on Earmark', async () => {
    const { status, body, headers } = await call(`${app.url}/earmark/key`, {
      method: 'POST',
      headers: as('alice'),
    })
    assert.equal(status, 200)
    assert.equal(headers.get('cache-control'), 'no-store')
    assert.equal(body.end_user, 'alice')
    assert.equal(body.scheme, 'token')
    assert.equal(typeof body.key, 'string')
    assert.equal(typeof body.api_key_id, 'string')
    const expiresIn = Date.parse(String(body.expiration_date)) - Date.now()
    assert.ok(expiresIn > 3500_000 && expiresIn <= 3600_000, `expires in ${expiresIn} ms`)

    // What Earmark knows of the key: usage:write only, tagged with the end user.
    const details = await call(`${earmark.url}/v1/auth/token`, {
      headers: { authorization: `Token ${body.key}` },
    })
    assert.deepEqual(details.body.scopes, ['usage:write'])
    assert.deepEqual(details.body.tags, ['end_user:alice'])

    const rec = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', String(body.key)] })
    assert.equal(rec.status, 101)
    assert.equal(rec.ws.protocol, 'token')
    const closed = await transcribe(rec, audio)
    assert.equal(closed.code, 1000)
    const wer = wordErrorRate(SENTENCE, finalText(rec))
    assert.ok(wer <= 0.35, `WER ${wer} for "${finalText(rec)}"`)

    const records = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId, {
      end_user: 'alice',
    })
    assert.equal(records.length, 1)
    assert.equal(records[0]?.end_user, 'alice')
    assert.equal(records[0]?.api_key_id, body.api_key_id)
  })

  it('pattern 1: only the end user a key was minted for may delete it; after DELETE Earmark refuses it', async () => {
    const minted = await call(`${app.url}/earmark/key`, { method: 'POST', headers: as('bob') })
    const id = String(minted.body.api_key_id)
    const key = String(minted.body.key)

    const stolen = await call(`${app.url}/earmark/key/${id}`, { method: 'DELETE', headers: as('mallory') })
    assert.equal(stolen.status, 404)
    assert.equal(stolen.body.err_code, 'KEY_NOT_FOUND')
    assert.equal(typeof stolen.body.request_id, 'string')
    // Same answer for a key that exists but is not the user's, and for one that does not exist.
    const unknown = await call(`${app.url}/earmark/key/00000000-0000-0000-0000-000000000000`, {
      method: 'DELETE',
      headers: as('mallory'),
    })
    assert.equal(unknown.status, 404)
    assert.equal(unknown.body.err_code, 'KEY_NOT_FOUND')
    // A key the app server did not mint for an end user (the server key itself) cannot be deleted either.
    const own = await call(`${earmark.url}/v1/auth/token`, {
      headers: { authorization: `Token ${earmark.ownerKey}` },
    })
    const server = await call(`${app.url}/earmark/key/${own.body.api_key_id}`, {
      method: 'DELETE',
      headers: as('bob'),
    })
    assert.equal(server.status, 404)

    const still = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', key] })
    assert.equal(still.status, 101)
    still.ws.close(1000)
    await still.closed

    const deleted = await call(`${app.url}/earmark/key/${id}`, { method: 'DELETE', headers: as('bob') })
    assert.equal(deleted.status, 200)
    assert.equal(typeof deleted.body.message, 'string')

    const refused = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', key] })
    assert.equal(refused.status, 401)
    assert.equal(JSON.parse(refused.body).err_code, 'INVALID_AUTH')
    const again = await call(`${app.url}/earmark/key/${id}`, { method: 'DELETE', headers: as('bob') })
    assert.equal(again.status, 404)
  })

  it('pattern 2: a grant token carries the end user, works as the bearer subprotocol and is attributed', async () => {
    const { status, body } = await call(`${app.url}/earmark/token`, {
      method: 'POST',
      headers: as('carol'),
      body: {},
    })
    assert.equal(status, 200)
    assert.equal(body.kind, 'grant')
    assert.equal(body.scheme, 'bearer')
    assert.equal(body.end_user, 'carol')
    assert.equal(body.expires_in, 30)
    const token = String(body.access_token)
    assert.equal(jwtClaims(token).end_user, 'carol')
    const details = await call(`${earmark.url}/v1/auth/token`, {
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(details.body.end_user, 'carol')

    // No body at all means the default kind, a grant.
    const bare = await call(`${app.url}/earmark/token`, { method: 'POST', headers: as('carol') })
    assert.equal(bare.body.kind, 'grant')

    const rec = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['bearer', token] })
    assert.equal(rec.ws.protocol, 'bearer')
    const closed = await transcribe(rec, audio)
    assert.equal(closed.code, 1000)
    assert.ok(wordErrorRate(SENTENCE, finalText(rec)) <= 0.35, finalText(rec))
    const records = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId, {
      end_user: 'carol',
    })
    assert.equal(records.length, 1)
    assert.equal(records[0]?.end_user, 'carol')
  })

  it('pattern 2: an expiring key works at once, is attributed by its tag, and is refused once expired', async () => {
    const { status, body } = await call(`${app.url}/earmark/token`, {
      method: 'POST',
      headers: as('dave'),
      body: { kind: 'key' },
    })
    assert.equal(status, 200)
    assert.equal(body.kind, 'key')
    assert.equal(body.scheme, 'token')
    assert.equal(body.end_user, 'dave')
    assert.ok(Number(body.expires_in) >= 1 && Number(body.expires_in) <= 2, `expires_in ${body.expires_in}`)
    const key = String(body.key)

    const rec = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', key] })
    assert.equal(rec.status, 101)
    rec.ws.send(JSON.stringify({ type: 'KeepAlive' }))
    await sendPcm(rec.ws, silence(0.5))
    // An open stream outlives its credential (docs/speech.md); end it cleanly.
    rec.ws.send(JSON.stringify({ type: 'CloseStream' }))
    assert.equal((await rec.closed).code, 1000)
    const records = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId, { end_user: 'dave' })
    assert.equal(records.length, 1)
    assert.equal(records[0]?.api_key_id, body.api_key_id)

    await sleep(2100)
    const expired = await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', key] })
    assert.equal(expired.status, 401)
  })

  it('refuses an unknown kind with INVALID_FIELD and a non-JSON body with 415', async () => {
    const bad = await call(`${app.url}/earmark/token`, {
      method: 'POST',
      headers: as('dave'),
      body: { kind: 'forever' },
    })
    assert.equal(bad.status, 400)
    assert.equal(bad.body.err_code, 'INVALID_FIELD')
    const res = await fetch(`${app.url}/earmark/token`, {
      method: 'POST',
      headers: { ...as('dave'), 'content-type': 'text/plain' },
      body: 'kind=key',
    })
    assert.equal(res.status, 415)
  })

  const ROUTES: [string, string][] = [
    ['POST', '/earmark/key'],
    ['DELETE', '/earmark/key/00000000-0000-0000-0000-000000000000'],
    ['POST', '/earmark/token'],
  ]
  it('answers 401 INVALID_AUTH on every route, the upgrade included, when authorize refuses', async () => {
    const keyCount = async () => {
      const keys = await call(`${earmark.url}/v1/projects/${earmark.projectId}/keys`, {
        headers: { authorization: `Token ${earmark.ownerKey}` },
      })
      return (keys.body.api_keys as unknown[]).length
    }
    const keysBefore = await keyCount()
    const before = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId)
    for (const [method, path] of ROUTES) {
      const { status, body, headers } = await call(`${app.url}${path}`, { method })
      assert.equal(status, 401, `${method} ${path}`)
      assert.equal(body.err_code, 'INVALID_AUTH')
      assert.equal(typeof body.err_msg, 'string')
      assert.equal(body.request_id, headers.get('dg-request-id'))
    }
    const rec = await record(`${app.wsUrl}/earmark/listen?${RAW}`)
    assert.equal(rec.status, 401)
    assert.equal(JSON.parse(rec.body).err_code, 'INVALID_AUTH')
    assert.equal(app.kit.stats.openProxies, 0)
    // Nothing was minted upstream for a refused request.
    assert.equal(await keyCount(), keysBefore)
    assert.equal((await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId)).length, before.length)
  })

  it('maps a throwing authorize to 401, and a thrown AppKitError FORBIDDEN to 403 (upgrade included)', async () => {
    const throwing = await startAppServer({
      upstream: { url: earmark.url, apiKey: earmark.ownerKey, projectId: earmark.projectId },
      authorize: (req) => {
        if (req.headers[END_USER_HEADER] === 'banned') throw new AppKitError('FORBIDDEN')
        throw new Error('session store down')
      },
    })
    try {
      for (const [method, path] of ROUTES) {
        const crashed = await call(`${throwing.url}${path}`, { method, headers: as('anyone') })
        assert.equal(crashed.status, 401)
        const banned = await call(`${throwing.url}${path}`, { method, headers: as('banned') })
        assert.equal(banned.status, 403)
        assert.equal(banned.body.err_code, 'FORBIDDEN')
      }
      const rec = await record(`${throwing.wsUrl}/earmark/listen?${RAW}`, { headers: as('banned') })
      assert.equal(rec.status, 403)
      assert.equal(JSON.parse(rec.body).err_code, 'FORBIDDEN')
    } finally {
      await throwing.close()
    }
  })

  it('leaves paths outside its prefix to the app, and answers 404/405/426 inside it', async () => {
    assert.equal((await fetch(`${app.url}/elsewhere`)).status, 404)
    assert.equal(await (await fetch(`${app.url}/elsewhere`)).text(), 'the app’s own 404')
    const unknown = await call(`${app.url}/earmark/nothing`, { headers: as('alice') })
    assert.equal(unknown.body.err_code, 'NOT_FOUND')
    const wrong = await call(`${app.url}/earmark/key`, { method: 'GET', headers: as('alice') })
    assert.equal(wrong.status, 405)
    const plain = await call(`${app.url}/earmark/listen`, { headers: as('alice') })
    assert.equal(plain.status, 426)
  })
})
