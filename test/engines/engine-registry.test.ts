import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfig } from '../../src/config/index.js'
import { createEngineRegistry, type Engine, isRelayEngine, parseEngineList } from '../../src/engines/index.js'
import { createUpstreamEngine } from '../../src/engines/upstream/upstream-engine.js'

// Engines chosen by name (EARMARK_ENGINE) and per request by model (docs/speech.md, "Choosing an engine").

function named(name: string): Engine {
  let closed = false
  return {
    name,
    sampleRate: 16_000,
    formatting: { punctuation: false, casing: false },
    model: { name, version: '1', arch: name, uuid: name },
    capacity: 1,
    inUse: () => (closed ? -1 : 0),
    openStream: () => Promise.reject(new Error('not used')),
    transcribe: () => Promise.reject(new Error('not used')),
    close: async () => {
      closed = true
    },
  }
}

describe('engine list and registry', () => {
  it('parses EARMARK_ENGINE: names, model lists, case and spaces', () => {
    assert.deepEqual(parseEngineList('pocketsphinx'), [{ name: 'pocketsphinx', models: [] }])
    assert.deepEqual(parseEngineList(' PocketSphinx : Nova-* | base ,'), [
      { name: 'pocketsphinx', models: ['nova-*', 'base'] },
    ])
  })

  it('refuses an unknown engine, one listed twice, an empty model list and an empty list', () => {
    for (const bad of ['whisper', 'pocketsphinx,pocketsphinx', 'pocketsphinx:', '', ' , ']) {
      assert.throws(() => parseEngineList(bad), RangeError, bad)
    }
  })

  it('the config lists engines, the default pocketsphinx, and names EARMARK_ENGINE when it is wrong', () => {
    assert.deepEqual(loadConfig({}).engines, [{ name: 'pocketsphinx', models: [] }])
    assert.throws(() => loadConfig({ EARMARK_ENGINE: 'nonsense' }), /EARMARK_ENGINE/)
  })

  it('routes a model to the first engine listing it, anything else to the first engine without a list', async () => {
    const a = named('a')
    const b = named('b')
    const c = named('c')
    const registry = createEngineRegistry([
      { engine: a, models: ['nova-*', 'enhanced'] },
      { engine: b },
      { engine: c, models: ['nova-3', 'whisper'] },
    ])
    assert.equal(registry.default, b)
    assert.equal(registry.forModel('nova-3'), a, 'the first listing wins')
    assert.equal(registry.forModel('Nova-2-Meeting'), a, 'a trailing * matches any rest, any case')
    assert.equal(registry.forModel('enhanced'), a)
    assert.equal(registry.forModel('enhanced-general'), b, 'without * a name matches exactly')
    assert.equal(registry.forModel('whisper'), c)
    assert.equal(registry.forModel(null), b)
    assert.deepEqual(
      registry.engines.map((e) => e.name),
      ['a', 'b', 'c'],
    )
    await registry.close()
    assert.deepEqual(
      registry.engines.map((e) => e.inUse()),
      [-1, -1, -1],
      'close closes every engine',
    )
  })

  it('claims a model only where an entry lists it by name or pattern', () => {
    const registry = createEngineRegistry([
      { engine: named('a'), models: ['nova-*'] },
      { engine: named('b') },
    ])
    assert.equal(registry.claims('Nova-9-Future'), true)
    assert.equal(registry.claims('base'), false, 'the default serves it, but claims nothing')
  })

  it('the upstream engine needs its URL and key, and takes only a plain http(s) or ws(s) base URL', () => {
    const env = { EARMARK_ENGINE: 'upstream:nova-*,pocketsphinx' }
    assert.throws(() => loadConfig(env), /EARMARK_UPSTREAM_URL and EARMARK_UPSTREAM_KEY/)
    assert.throws(() => loadConfig({ ...env, EARMARK_UPSTREAM_URL: 'http://h:1' }), /EARMARK_UPSTREAM_KEY/)
    const config = loadConfig({
      ...env,
      EARMARK_UPSTREAM_URL: 'https://h.example',
      EARMARK_UPSTREAM_KEY: 'k',
    })
    assert.deepEqual(config.upstream, { url: 'https://h.example', key: 'k', scheme: 'token', capacity: 1000 })
    assert.equal(
      loadConfig({ EARMARK_UPSTREAM_URL: 'http://h:1', EARMARK_UPSTREAM_KEY: 'k' }).upstream,
      undefined,
    )
    for (const url of ['ftp://h', 'http://user:pw@h', 'http://h/?x=1', 'not a url']) {
      assert.throws(() => createUpstreamEngine({ url, key: 'k', capacity: 1 }), RangeError, url)
    }
    assert.throws(() => createUpstreamEngine({ url: 'http://h', key: '', capacity: 1 }), RangeError)
    const relay = createUpstreamEngine({ url: 'wss://h.example/prefix', key: 'k', capacity: 3 })
    assert.equal(isRelayEngine(relay), true)
    assert.equal(relay.capacity, 3)
    assert.equal(isRelayEngine(named('a')), false)
  })

  it('with model lists only, the first engine is the default; an empty registry is refused', () => {
    const a = named('a')
    assert.equal(createEngineRegistry([{ engine: a, models: ['nova-*'] }]).forModel('base'), a)
    assert.throws(() => createEngineRegistry([]), RangeError)
  })
})
