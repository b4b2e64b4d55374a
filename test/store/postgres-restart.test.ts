import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { bytesToPcm, runTool } from '../helpers/audio-fixtures.js'
import { openSocket, type StreamLog, sendPcm } from '../helpers/live-server.js'
import { type PostgresCluster, startPostgresCluster } from '../helpers/postgres-cluster.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Issue 10, item 4 (docs/store.md, "When PostgreSQL restarts"): two `earmark serve` processes on a PostgreSQL
// cluster of this test's own, under steady concurrent writes and reads, while PostgreSQL is restarted (fast),
// crashed and restarted (immediate), and has every session cut (pg_terminate_backend). Every answer is a
// success or a Deepgram-shaped 503, nothing hangs, no node exits or is restarted, each recovers by itself
// within a measured bound, and everything acknowledged is there afterwards.

/** A request that takes longer than this counts as a hang. */
const REQUEST_TIMEOUT_MS = 30_000
/** Each node must serve a database read again within this of PostgreSQL accepting connections. */
const RECOVERY_BOUND_MS = 10_000
/** Steady load between two disruptions. */
const STEADY_MS = 3000

type Op = 'create' | 'delete' | 'grant' | 'read' | 'listen' | 'probe' | 'verify'

interface Outcome {
  op: Op
  node: number
  startedAt: number
  endedAt: number
  status: number
  body: Record<string, unknown>
  headers: Headers
}

describe('PostgreSQL restarted under load', { timeout: 300_000 }, () => {
  const ownerKey = `emk_pg_restart_test_${randomUUID().replaceAll('-', '')}_owner`
  let cluster: PostgresCluster | undefined
  let nodes: ServerProcess[] = []
  let projectId = ''
  let wav: Buffer
  const wavPath = join(tmpdir(), `earmark-pg-restart-${randomUUID()}.wav`)

  before(async () => {
    recordSecrets(ownerKey)
    cluster = await startPostgresCluster()
    const url = await cluster.createDatabase('earmark')
    const env = { EARMARK_DATABASE_URL: url, EARMARK_CAPACITY: '2' }
    // One after the other: the first bootstraps the project, the second finds it.
    nodes.push(await startServerProcess({ bootstrapKey: ownerKey, env }))
    nodes.push(await startServerProcess({ bootstrapKey: ownerKey, env }))
    await runTool('flite', ['-voice', 'slt', '-t', 'Restart the database under load.', '-o', wavPath])
    wav = await readFile(wavPath)
  })

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    for (const n of nodes) removeDir(n.dataDir)
    nodes = []
    await cluster?.destroy()
    removeDir(wavPath)
  })

  it('answers 200 or 503 through a fast restart, a crash and cut sessions, recovers by itself, and loses nothing acknowledged', async (t) => {
    const pg = cluster
    assert.ok(pg, 'the cluster started')
    const urls = nodes.map((n) => n.url)
    const outcomes: Outcome[] = []
    /** Requests that got no answer: a hang (timeout) or a node gone. */
    const failures: string[] = []

    const call = async (
      op: Op,
      node: number,
      method: string,
      path: string,
      auth: string,
      body?: unknown,
    ): Promise<Outcome> => {
      const startedAt = Date.now()
      const isAudio = Buffer.isBuffer(body)
      let res: Response
      try {
        res = await fetch(`${urls[node]}${path}`, {
          method,
          headers: {
            authorization: auth,
            ...(body === undefined ? {} : { 'content-type': isAudio ? 'audio/wav' : 'application/json' }),
          },
          ...(body === undefined ? {} : { body: isAudio ? body : JSON.stringify(body) }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        })
      } catch (err) {
        // A node that died says why in its errors (its exit may not have been seen yet).
        const errors = nodes[node]?.output.filter((l) => !/^\{"level":[1-4]0,/.test(l)) ?? []
        const why = `; its errors:\n${errors.slice(-5).join('\n')}`
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
        failures.push(`${op} ${method} ${path} on node ${node}: ${cause}${why}`)
        throw new Error(failures.at(-1))
      }
      const text = await res.text()
      const outcome: Outcome = {
        op,
        node,
        startedAt,
        endedAt: Date.now(),
        status: res.status,
        body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
        headers: res.headers,
      }
      outcomes.push(outcome)
      return outcome
    }
    const owner = `Token ${ownerKey}`

    const projects = await call('read', 0, 'GET', '/v1/projects', owner)
    assert.equal(projects.status, 200)
    projectId = String((projects.body.projects as { project_id: string }[])[0]?.project_id)

    // What was acknowledged, to be checked at the end.
    const created = new Map<string, string>() // key id → secret
    const deleted = new Map<string, string>()
    const grants: string[] = []
    const listened: { requestId: string; duration: number }[] = []
    let keysCreated = 0
    /** Keys whose deletion got a 503: it may or may not have happened. */
    const deletedUnsure: string[] = []

    let running = true
    const pick = () => Math.floor(Math.random() * nodes.length)
    const writer = async () => {
      while (running) {
        const roll = Math.random()
        if (roll < 0.35) {
          const res = await call('create', pick(), 'POST', `/v1/projects/${projectId}/keys`, owner, {
            comment: 'restart load',
            scopes: ['member'],
          })
          if (res.status === 200) {
            recordSecrets(res.body.key as string)
            created.set(res.body.api_key_id as string, res.body.key as string)
            keysCreated++
          }
        } else if (roll < 0.55) {
          const victim = [...created.keys()].find((id) => !deleted.has(id))
          if (victim !== undefined) {
            const secret = created.get(victim) ?? ''
            // Taken out first: a deletion whose answer was a 503 may or may not have happened.
            created.delete(victim)
            const res = await call(
              'delete',
              pick(),
              'DELETE',
              `/v1/projects/${projectId}/keys/${victim}`,
              owner,
            )
            if (res.status === 200) deleted.set(victim, secret)
            else deletedUnsure.push(victim)
          }
        } else if (roll < 0.7) {
          const res = await call('grant', pick(), 'POST', '/v1/auth/grant', owner, { ttl_seconds: 3600 })
          if (res.status === 200) {
            recordSecrets(res.body.access_token as string)
            grants.push(res.body.access_token as string)
          }
        } else {
          const path = roll < 0.85 ? `/v1/projects/${projectId}/keys` : `/v1/projects/${projectId}`
          await call('read', pick(), 'GET', path, owner)
        }
        await sleep(20)
      }
    }
    const listener = async () => {
      while (running) {
        const res = await call('listen', pick(), 'POST', '/v1/listen', owner, wav)
        if (res.status === 200) {
          const metadata = res.body.metadata as { request_id: string; duration: number }
          listened.push({ requestId: metadata.request_id, duration: metadata.duration })
        }
        await sleep(50)
      }
    }
    const load = Promise.all([...Array.from({ length: 6 }, writer), listener(), listener()])
    // A failure in the load (a hang) ends the test with it, not after it.
    load.catch(() => {
      running = false
    })

    /** Polls `node` with a database read until it answers 200; returns when it did. */
    const recovered = async (node: number, since: number) => {
      for (;;) {
        const res = await call('probe', node, 'GET', `/v1/projects/${projectId}/keys`, owner)
        if (res.status === 200) return res.endedAt
        if (Date.now() - since > RECOVERY_BOUND_MS * 3) assert.fail(`node ${node} did not recover`)
        await sleep(25)
      }
    }

    const rounds: Record<string, unknown>[] = []
    const disrupt = async (name: string, action: () => Promise<unknown>) => {
      await sleep(STEADY_MS)
      const begin = Date.now()
      const detail = await action()
      // PostgreSQL accepts connections again (pg_ctl waits for it) or, for cut sessions, never stopped.
      const up = Date.now()
      const backAt = await Promise.all(nodes.map((_, i) => recovered(i, up)))
      const inGap = outcomes.filter((o) => o.endedAt >= begin && o.startedAt <= Math.max(...backAt))
      const round = {
        round: name,
        ...(detail === undefined ? {} : { detail }),
        downMs: up - begin,
        recoveredMsAfterUp: backAt.map((at) => at - up),
        answersInGap: tally(inGap),
      }
      rounds.push(round)
      t.diagnostic(JSON.stringify(round))
      for (const ms of round.recoveredMsAfterUp) {
        assert.ok(ms <= RECOVERY_BOUND_MS, `${name}: a node recovered ${ms} ms after PostgreSQL was up`)
      }
    }

    // A live stream that ends while PostgreSQL is down: it was served, so its usage record is written once
    // PostgreSQL is back (docs/store.md, "Restarted under load").
    const stream = await openSocket(
      `${urls[0]?.replace('http', 'ws')}/v1/listen?encoding=linear16&sample_rate=16000`,
      {
        headers: { authorization: owner },
      },
    )
    assert.equal(stream.log.status, undefined, 'the stream opened')
    await sendPcm(stream.ws, bytesToPcm(wav.subarray(44)).subarray(0, 16000))
    let streamed: StreamLog | undefined
    try {
      await disrupt('pg_ctl restart -m fast, a live stream ending in the gap', async () => {
        const restarted = pg.restart('fast')
        await sleep(500)
        stream.ws.send(JSON.stringify({ type: 'CloseStream' }))
        streamed = await stream.closed
        await restarted
      })
      await disrupt('pg_ctl restart -m immediate (crash recovery)', () => pg.restart('immediate'))
      await disrupt('pg_terminate_backend on every session', async () => ({
        sessionsEnded: await pg.terminateSessions('earmark'),
      }))
      // The load goes on until a transcription was acknowledged after the last round too (they are slow on a
      // busy machine), so usage written after the recovery is checked as well.
      const before = listened.length
      const until = Date.now() + 60_000
      await sleep(STEADY_MS)
      while (listened.length === before && Date.now() < until) await sleep(100)
    } finally {
      running = false
    }
    await load

    assert.deepEqual(failures, [], 'every request was answered in time')
    for (const [i, n] of nodes.entries()) {
      assert.equal(n.child.exitCode, null, `node ${i} never exited`)
      assert.equal(n.child.signalCode, null, `node ${i} was never killed`)
    }

    const unexpected = outcomes.filter((o) => o.status !== 200 && o.status !== 503)
    assert.deepEqual(
      unexpected.map((o) => `${o.op} → ${o.status} ${JSON.stringify(o.body)}`),
      [],
      'every answer is a success or a 503',
    )
    for (const o of outcomes.filter((x) => x.status === 503)) {
      assert.equal(o.body.err_code, 'SERVICE_UNAVAILABLE', `${o.op}: ${JSON.stringify(o.body)}`)
      assert.equal(typeof o.body.err_msg, 'string')
      assert.equal(typeof o.body.request_id, 'string')
      assert.ok(Number(o.headers.get('retry-after')) >= 1, `${o.op}: a 503 says when to retry`)
    }

    // Nothing acknowledged is lost: checked on both nodes, each a fresh look at the database.
    const lost: string[] = []
    for (const node of nodes.keys()) {
      for (const [id, secret] of created) {
        const res = await call('verify', node, 'GET', '/v1/auth/token', `Token ${secret}`)
        if (res.status !== 200) lost.push(`created key ${id} → ${res.status} on node ${node}`)
      }
      for (const [id, secret] of deleted) {
        const res = await call('verify', node, 'GET', '/v1/auth/token', `Token ${secret}`)
        if (res.status !== 401) lost.push(`deleted key ${id} → ${res.status} on node ${node}`)
      }
      for (const token of grants) {
        const res = await call('verify', node, 'GET', '/v1/auth/token', `Bearer ${token}`)
        if (res.status !== 200) lost.push(`grant token → ${res.status} on node ${node}`)
      }
    }
    const streamId = (streamed?.messages.find((m) => m.type === 'Metadata') as { request_id?: string })
      ?.request_id
    assert.ok(streamId, 'the stream sent its metadata')
    listened.push({ requestId: streamId, duration: 1 })
    for (const { requestId, duration } of listened) {
      const res = await call('verify', 0, 'GET', `/v1/projects/${projectId}/requests/${requestId}`, owner)
      const details = (res.body.response as { details?: { duration?: number } } | undefined)?.details
      if (res.status !== 200 || Math.abs((details?.duration ?? -1) - duration) > 0.01) {
        lost.push(`usage of ${requestId} → ${res.status} ${JSON.stringify(res.body.response)}`)
      }
    }
    // The audit trail of what was acknowledged (docs/audit.md): written after the answer, retried through an outage.
    const audited = new Set<string>()
    for (const type of ['key.created', 'key.deleted']) {
      const res = await call(
        'verify',
        0,
        'GET',
        `/v1/projects/${projectId}/audit?type=${type}&limit=1000`,
        owner,
      )
      for (const e of (res.body.events ?? []) as { key_id: string }[]) audited.add(`${type} ${e.key_id}`)
    }
    const createdIds = [...created.keys(), ...deleted.keys(), ...deletedUnsure]
    for (const id of createdIds) if (!audited.has(`key.created ${id}`)) lost.push(`audit key.created ${id}`)
    for (const id of deleted.keys())
      if (!audited.has(`key.deleted ${id}`)) lost.push(`audit key.deleted ${id}`)
    const summary = {
      answers: tally(outcomes),
      acknowledged: {
        keysCreated,
        keysDeleted: deleted.size,
        grants: grants.length,
        listens: listened.length,
      },
      lost: lost.length,
    }
    t.diagnostic(JSON.stringify(summary))
    assert.deepEqual(lost, [], 'every acknowledged write is there')
    assert.ok(
      listened.length > 0 && created.size > 0 && deleted.size > 0 && grants.length > 0,
      'the load did work',
    )
  })
})

function tally(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) {
    const k = `${o.op} ${o.status}`
    counts[k] = (counts[k] ?? 0) + 1
  }
  return counts
}
