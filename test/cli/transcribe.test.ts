import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { freePort } from '../helpers/free-port.js'
import { removeDir, type ServerProcess, startServerProcess, tempDataDir } from '../helpers/server-process.js'
import { wordErrorRate } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// `earmark transcribe`, `earmark usage`, `earmark keys reroll` and `--json`, run as the real binary in a child
// process (docs/cli.md): speech made with flite, the embedded engine and a real server started here.

const ROOT = new URL('../..', import.meta.url).pathname
const run = promisify(execFile)
/** The data directory of a command given none: never the repository's ./data. */
const FALLBACK_DATA_DIR = tempDataDir()

/** What the speech files say (flite voices PocketSphinx recognises well). */
const SPOKEN: Record<string, { text: string; voice: string }> = {
  morning: { text: 'good morning, the weather is lovely today', voice: 'slt' },
  door: { text: 'please open the door and turn on the lights', voice: 'rms' },
  dog: { text: 'the dog ran across the yard to catch the ball', voice: 'slt' },
}

interface BinResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs `bin/earmark.js args…` to its end, without a terminal (pipes on every stream). */
function earmark(args: string[], env: NodeJS.ProcessEnv = {}): Promise<BinResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/earmark.js'), ...args], {
      cwd: ROOT,
      // A fixed capacity: no measuring decode at each start. The test's own variables win.
      env: {
        ...process.env,
        EARMARK_DATA_DIR: FALLBACK_DATA_DIR,
        EARMARK_CAPACITY: '2',
        EARMARK_URL: '',
        EARMARK_API_KEY: '',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/** The cues of an SRT or WebVTT file, checked to be well-formed: numbered 1… (SRT), times `start --> end`. */
function cues(text: string, format: 'srt' | 'vtt'): { start: number; end: number; text: string }[] {
  const sep = format === 'srt' ? ',' : '.'
  const time = `(\\d{2}):(\\d{2}):(\\d{2})${sep === '.' ? '\\.' : ','}(\\d{3})`
  const timing = new RegExp(`^${time} --> ${time}$`)
  const seconds = (m: RegExpExecArray, i: number) =>
    Number(m[i]) * 3600 + Number(m[i + 1]) * 60 + Number(m[i + 2]) + Number(m[i + 3]) / 1000
  let blocks = text.trim().split(/\n\n+/)
  if (format === 'vtt') {
    assert.equal(blocks[0], 'WEBVTT', 'a WebVTT file starts with its signature')
    blocks = blocks.slice(1).filter((b) => !b.startsWith('NOTE'))
  }
  return blocks.map((block, i) => {
    const lines = block.split('\n')
    if (format === 'srt') assert.equal(lines.shift(), String(i + 1), `cue ${i + 1} is numbered`)
    const m = timing.exec(lines[0] ?? '')
    assert.ok(m, `cue ${i + 1} has a timing line: ${lines[0]}`)
    const cue = { start: seconds(m, 1), end: seconds(m, 5), text: lines.slice(1).join(' ') }
    assert.ok(cue.text.trim() !== '', `cue ${i + 1} has text`)
    return cue
  })
}

/** Checks that cue times go forward: each cue starts where or after the last ended, and ends after it starts. */
function assertIncreasing(list: { start: number; end: number }[], name: string) {
  assert.ok(list.length > 0, `${name} has cues`)
  let last = 0
  for (const cue of list) {
    assert.ok(cue.start >= last, `${name}: ${cue.start} follows ${last}`)
    assert.ok(cue.end > cue.start, `${name}: ${cue.end} after ${cue.start}`)
    last = cue.end
  }
}

const jsonOf = (r: BinResult) => {
  assert.doesNotThrow(() => JSON.parse(r.stdout), `stdout is one JSON document:\n${r.stdout}\n${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Exactly one stderr line, in the CLI's style: `earmark: CODE: message`. */
function assertOneErrorLine(r: BinResult, code: RegExp) {
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.length, 1, `one stderr line:\n${r.stderr}`)
  assert.match(lines[0] ?? '', /^earmark: [A-Z_]+: \S/)
  assert.match(lines[0] ?? '', code)
}

describe('earmark transcribe, usage and keys reroll as the real binary', () => {
  const work = tempDataDir()
  const audio = join(work, 'audio')
  const ownerKey = `emk_cli_${'k'.repeat(24)}`
  let server: ServerProcess
  const embeddedText: Record<string, string> = {}

  before(async () => {
    recordSecrets(ownerKey)
    mkdirSync(audio)
    for (const [name, { text, voice }] of Object.entries(SPOKEN)) {
      await run('flite', ['-voice', voice, '-t', text, '-o', join(audio, `${name}.wav`)])
    }
    // One in a container other than WAV, as a user's folder would have.
    await run('ffmpeg', [
      '-v',
      'error',
      '-i',
      join(audio, 'dog.wav'),
      '-c:a',
      'libvorbis',
      join(audio, 'dog.ogg'),
    ])
    await run('rm', [join(audio, 'dog.wav')])
    writeFileSync(join(audio, 'notes.md'), 'not audio: a directory run skips it')
    // One credential holds one slot at a time: the client's 429 retries are exercised (docs/cli.md).
    server = await startServerProcess({
      bootstrapKey: ownerKey,
      env: { EARMARK_CAPACITY: '2', EARMARK_MAX_STREAMS_PER_CREDENTIAL: '1' },
    })
  })
  after(async () => {
    await server?.stop()
    if (server) removeDir(server.dataDir)
    removeDir(work)
    removeDir(FALLBACK_DATA_DIR)
  })

  it('transcribes a folder with the embedded engine to JSON, text, SRT and WebVTT, and reports it as JSON', async () => {
    const out = join(work, 'embedded')
    const dataDir = join(work, 'embedded-data')
    const r = await earmark([
      '-d',
      dataDir,
      'transcribe',
      audio,
      '--format',
      'json,text,srt,vtt',
      '--out',
      out,
      '--json',
    ])
    assert.equal(r.code, 0, r.stderr)
    const report = jsonOf(r)
    assert.equal(report.succeeded, 3)
    assert.equal(report.failed, 0)
    assert.deepEqual(
      report.files.map((f: { input: string }) => f.input).sort(),
      ['dog.ogg', 'door.wav', 'morning.wav'].map((f) => join(audio, f)),
      'the audio files of the folder, not its notes',
    )
    assert.deepEqual(readdirSync(out).sort(), [
      ...['dog', 'door', 'morning'].flatMap((n) => [`${n}.json`, `${n}.srt`, `${n}.txt`, `${n}.vtt`]),
    ])
    // Without a terminal, progress is one line per finished file (on stderr with --json: stdout is the JSON).
    const progress = r.stderr.split('\n').filter((l) => /^(ok|failed)\t/.test(l))
    assert.equal(progress.length, 3, r.stderr)
    for (const [name, { text }] of Object.entries(SPOKEN)) {
      const transcript = readFileSync(join(out, `${name}.txt`), 'utf8')
      assert.ok(wordErrorRate(text, transcript) <= 0.34, `${name}: "${transcript.trim()}" says "${text}"`)
      embeddedText[name] = transcript
      const answer = JSON.parse(readFileSync(join(out, `${name}.json`), 'utf8'))
      assert.equal(answer.results.channels[0].alternatives[0].transcript.length > 0, true)
      assert.ok(answer.metadata.duration > 2 && answer.metadata.duration < 5, `${answer.metadata.duration} s`)
      assert.match(answer.metadata.sha256, /^[0-9a-f]{64}$/)
      const file = report.files.find((f: { input: string }) => f.input.includes(`${name}.`))
      assert.equal(file.audio_seconds, answer.metadata.duration)
      const srt = cues(readFileSync(join(out, `${name}.srt`), 'utf8'), 'srt')
      const vtt = cues(readFileSync(join(out, `${name}.vtt`), 'utf8'), 'vtt')
      assertIncreasing(srt, `${name}.srt`)
      assertIncreasing(vtt, `${name}.vtt`)
      assert.deepEqual(
        srt.map((c) => c.text).join(' '),
        transcript.trim().split('\n').join(' '),
        'the captions hold the transcript',
      )
      assert.deepEqual(vtt, srt, 'WebVTT and SRT carry the same cues')
    }
  })

  it('transcribes the same folder through a running server, retrying 429s, with the same transcripts', async () => {
    const out = join(work, 'served')
    const r = await earmark(
      [
        'transcribe',
        audio,
        '--url',
        server.url,
        '--format',
        'text,srt',
        '--out',
        out,
        '--concurrency',
        '3',
        '--retries',
        '60',
      ],
      { EARMARK_API_KEY: ownerKey },
    )
    assert.equal(r.code, 0, r.stderr)
    assert.ok(!`${r.stdout}${r.stderr}`.includes(ownerKey), 'the key is never printed')
    // Plain lines on stdout, one per file: status, name, audio length, time, files written.
    const lines = r.stdout.trimEnd().split('\n')
    const done = lines.filter((l) => !l.startsWith('retry\t'))
    assert.equal(done.length, 3, r.stdout)
    for (const line of done)
      assert.match(line, /^ok\t\S+\.(wav|ogg)\t\d+\.\d s audio\t\d+\.\d s\t\S+\.txt \S+\.srt$/)
    // Three at once against a share of one: the others were refused with Retry-After and tried again.
    const retries = lines.filter((l) => l.startsWith('retry\t'))
    assert.ok(retries.length >= 2, r.stdout)
    for (const line of retries) assert.match(line, /^retry\t\S+\tin \d+\.\d s\tTOO_MANY_REQUESTS: /)
    for (const name of Object.keys(SPOKEN)) {
      assert.equal(
        readFileSync(join(out, `${name}.txt`), 'utf8'),
        embeddedText[name],
        `${name}: one pipeline`,
      )
      assertIncreasing(cues(readFileSync(join(out, `${name}.srt`), 'utf8'), 'srt'), name)
    }
  })

  it('tables usage per key and per end user after real traffic, the same from the store and the server', async () => {
    const created = await earmark([
      '-d',
      server.dataDir,
      'keys',
      'create',
      '--scopes',
      'member',
      '--tags',
      'end_user:alice',
      '--comment',
      'alice app',
      '--json',
    ])
    assert.equal(created.code, 0, created.stderr)
    const alice = jsonOf(created) as { key: string; api_key_id: string }
    recordSecrets(alice.key)
    const one = await earmark(
      ['transcribe', join(audio, 'morning.wav'), '--url', server.url, '--out', join(work, 'alice')],
      {
        EARMARK_API_KEY: alice.key,
      },
    )
    assert.equal(one.code, 0, one.stderr)

    const viaServer = await earmark(['usage', '--url', server.url, '--json'], { EARMARK_API_KEY: ownerKey })
    const viaStore = await earmark(['usage', '-d', server.dataDir, '--json'])
    assert.equal(viaServer.code, 0, viaServer.stderr)
    assert.equal(viaStore.code, 0, viaStore.stderr)
    const report = jsonOf(viaServer)
    assert.deepEqual(jsonOf(viaStore), report, 'the store and the server agree')
    const aliceRow = report.keys.find((k: { api_key_id: string }) => k.api_key_id === alice.api_key_id)
    assert.equal(aliceRow.requests, 1)
    assert.equal(aliceRow.comment, 'alice app')
    assert.ok(aliceRow.audio_seconds > 2, String(aliceRow.audio_seconds))
    const owner = report.keys.find((k: { api_key_id: string }) => k.api_key_id !== alice.api_key_id)
    assert.equal(owner.requests, 3, 'the three files of the folder, 429 refusals not metered')
    assert.deepEqual(
      report.end_users.map((u: { end_user: string | null; requests: number }) => [u.end_user, u.requests]),
      [
        [null, 3],
        ['alice', 1],
      ],
      'most audio first',
    )
    assert.equal(report.total.requests, 4)
    // The totals match the server's own daily summary.
    const summary = (await (
      await fetch(`${server.url}/v1/projects/${report.project_id}/usage`, {
        headers: { authorization: `Token ${ownerKey}` },
      })
    ).json()) as { results: { requests: number; audio_seconds: number }[] }
    assert.equal(
      summary.results.reduce((n, d) => n + d.requests, 0),
      report.total.requests,
    )
    const seconds = summary.results.reduce((n, d) => n + d.audio_seconds, 0)
    assert.ok(
      Math.abs(seconds - report.total.audio_seconds) < 0.01,
      `${seconds} vs ${report.total.audio_seconds}`,
    )

    const table = await earmark(['usage', '-d', server.dataDir])
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, /^API key\s+comment\s+requests\s+audio min$/m)
    assert.match(table.stdout, new RegExp(`^${alice.api_key_id}\\s+alice app\\s+1\\s+\\d+\\.\\d{3}$`, 'm'))
    assert.match(table.stdout, /^alice\s+1\s+\d+\.\d{3}$/m)
    assert.match(table.stdout, /^total\s+4\s+\d+\.\d{3}$/m)
  })

  it('draws a progress bar on a terminal (util-linux script gives it one)', async () => {
    const out = join(work, 'tty')
    const command = [
      process.execPath,
      join(ROOT, 'bin/earmark.js'),
      'transcribe',
      audio,
      '--url',
      server.url,
      '--out',
      out,
    ]
    const { stdout } = await run('script', ['-qec', command.map((a) => `'${a}'`).join(' '), '/dev/null'], {
      cwd: ROOT,
      env: { ...process.env, EARMARK_API_KEY: ownerKey, EARMARK_URL: '' },
    })
    assert.match(stdout, /3\/3 files \| \d+\.\d s audio \| 0 failed/, 'the bar reached the end')
    assert.match(stdout, /\u2588/, 'the bar is drawn')
    assert.equal(stdout.match(/ok\t/g)?.length, 3, 'each finished file still gets its line, above the bar')
    assert.ok(!stdout.includes(ownerKey))
    assert.equal(readdirSync(out).length, 3)
  })

  it('rerolls a key with --json: the new secret transcribes, the old one exits with the auth code', async () => {
    const created = jsonOf(
      await earmark(['-d', server.dataDir, 'keys', 'create', '--scopes', 'member', '--json']),
    )
    recordSecrets(created.key)
    const rerolled = await earmark([
      '-d',
      server.dataDir,
      'keys',
      'reroll',
      created.api_key_id,
      '--grace-period',
      '0',
      '--json',
    ])
    assert.equal(rerolled.code, 0, rerolled.stderr)
    const body = jsonOf(rerolled)
    recordSecrets(body.key)
    assert.equal(body.api_key_id, created.api_key_id)
    assert.notEqual(body.key, created.key)
    const file = join(audio, 'door.wav')
    const args = ['transcribe', file, '--url', server.url, '--out', join(work, 'reroll'), '--json']
    const ok = await earmark([...args, '--key', body.key])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(jsonOf(ok).succeeded, 1)
    const old = await earmark([...args, '--key', created.key])
    assert.equal(old.code, 3, old.stderr)
    assertOneErrorLine(old, /^earmark: INVALID_AUTH: /)
    assert.ok(!old.stderr.includes(created.key), 'the refused key is not echoed')
    assert.equal(jsonOf(old).error.code, 'INVALID_AUTH', '--json still reports what happened')
  })

  it('exits with the documented codes, one stderr line each', async () => {
    const bad = join(work, 'bad')
    mkdirSync(bad)
    writeFileSync(join(bad, 'broken.wav'), 'RIFF but not really audio at all')
    await run('cp', [join(audio, 'door.wav'), join(bad, 'door.wav')])
    const closed = await freePort()
    const cases: { args: string[]; env?: NodeJS.ProcessEnv; code: number; line: RegExp }[] = [
      {
        args: ['transcribe', join(work, 'no-such.wav')],
        code: 2,
        line: /^earmark: NOT_FOUND: .*no-such\.wav/,
      },
      { args: ['transcribe', audio, '--format', 'docx'], code: 2, line: /^earmark: BAD_REQUEST: .*format/ },
      {
        args: ['transcribe', audio, '--query', 'encoding=nonsense'],
        code: 2,
        line: /^earmark: INVALID_FIELD: /,
      },
      {
        args: ['transcribe', audio, '--url', server.url],
        code: 3,
        line: /^earmark: INVALID_AUTH: No API key/,
      },
      {
        args: ['transcribe', audio, '--url', server.url, '--key', `emk_${'0'.repeat(56)}`],
        code: 3,
        line: /^earmark: INVALID_AUTH: /,
      },
      {
        args: ['usage', '--url', server.url, '--key', `emk_${'0'.repeat(56)}`],
        code: 3,
        line: /^earmark: INVALID_AUTH: /,
      },
      {
        // A port nothing listens on; the key is not in the line.
        args: ['transcribe', audio, '--url', `http://user:secret@127.0.0.1:${closed}/`, '--key', ownerKey],
        code: 5,
        line: new RegExp(
          `^earmark: SERVICE_UNAVAILABLE: Could not reach http://127\\.0\\.0\\.1:${closed}: ECONNREFUSED\\.$`,
        ),
      },
      { args: ['usage', '--start', 'yesterday'], code: 2, line: /^earmark: INVALID_FIELD: .*start/ },
      {
        args: ['keys', 'reroll', 'no-such-key', '-d', server.dataDir],
        code: 2,
        line: /^earmark: KEY_NOT_FOUND: /,
      },
    ]
    for (const c of cases) {
      const r = await earmark(c.args, c.env)
      assert.equal(r.code, c.code, `${c.args.join(' ')}:\n${r.stderr}`)
      assertOneErrorLine(r, c.line)
      assert.equal(r.stdout, '', `${c.args.join(' ')}: nothing on stdout`)
    }
    // A file that fails among good ones: the others are written, exit 4.
    const out = join(work, 'partial')
    const r = await earmark(['transcribe', bad, '--url', server.url, '--key', ownerKey, '--out', out])
    assert.equal(r.code, 4, r.stderr)
    assert.match(r.stdout, /^failed\t\S+broken\.wav\tBAD_AUDIO: /m)
    assert.match(r.stdout, /^ok\t\S+door\.wav\t/m)
    assert.deepEqual(readdirSync(out), ['door.txt'])
    assert.match(r.stderr, /^earmark: 1 of 2 files failed; the others were written\.$/m)
  })

  it('prints one JSON document and nothing else on stdout for every command given --json', async () => {
    const dir = join(work, 'json-data')
    const commands = [
      ['init'],
      ['init'],
      ['keys', 'list'],
      ['members', 'list'],
      ['signing-keys', 'list'],
      ['keys', 'sweep'],
      ['usage'],
    ]
    for (const args of commands) {
      const r = await earmark(['-d', dir, ...args, '--json'])
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
      const value = jsonOf(r)
      if (args[0] === 'init' && value.key) recordSecrets(value.key)
    }
  })
})
