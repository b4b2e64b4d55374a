import assert from 'node:assert/strict'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { CONSOLE_CSP } from '../../src/http/routes/console.js'
import { type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The console (docs/console.md) in real headless Debian Chromium against a real Earmark (real SQLite file, real
// PocketSphinx) on a free loopback port. The live stream the page closes is a real client socket opened here
// with flite speech; the usage chart draws the traffic made here. Screenshots go to artifacts/browser/console/
// (git-ignored).

const ROOT = new URL('../..', import.meta.url).pathname
const SHOTS = join(ROOT, 'artifacts/browser/console')
const RAW = 'encoding=linear16&sample_rate=16000'
const END_USER = 'console-user'

describe('the console in headless Chromium', { timeout: 240_000 }, () => {
  let srv: LiveServer
  let browser: Browser
  let context: BrowserContext
  let page: Page
  /** Page errors and console errors (a CSP violation shows up here). */
  const problems: string[] = []
  const cleanups: (() => void)[] = []

  before(async () => {
    await mkdir(SHOTS, { recursive: true })
    console.log(`console screenshots: ${SHOTS}`)
    srv = await startLiveServer({ EARMARK_CAPACITY: '4' })
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.url })
    page = await context.newPage()
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`)
    })
    // Every confirmation the page asks for is accepted.
    page.on('dialog', (d) => void d.accept())
  })

  after(async () => {
    for (const c of cleanups) c()
    await browser?.close()
    await srv?.close()
  })

  /**
   * Evaluates `expression` in the page through the DevTools protocol (which the page's CSP does not govern,
   * unlike an injected <script> or Playwright's eval), awaiting a promise, and returns its value. A string:
   * the root tsconfig has no DOM lib.
   */
  const inPage = async <T>(expression: string): Promise<T> => {
    const cdp = await context.newCDPSession(page)
    try {
      const r = (await cdp.send('Runtime.evaluate', {
        expression,
        returnByValue: true,
        awaitPromise: true,
        userGesture: true,
      })) as {
        result: { value: T }
        exceptionDetails?: { text: string; exception?: { description?: string } }
      }
      if (r.exceptionDetails) {
        throw new Error(r.exceptionDetails.exception?.description ?? r.exceptionDetails.text)
      }
      return r.result.value
    } finally {
      await cdp.detach()
    }
  }

  /** Polls `check` until it holds. */
  const until = async (check: () => Promise<boolean>, timeoutMs: number, what: string) => {
    const deadline = Date.now() + timeoutMs
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true })

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: {
        authorization: `Token ${srv.ownerKey}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return (await res.json()) as Record<string, unknown>
  }

  test('the page and its assets come from the server with a strict CSP and no inline script', async () => {
    const res = await page.goto(`${srv.url}/`)
    assert.equal(res?.status(), 200)
    const csp = res?.headers()['content-security-policy'] ?? ''
    assert.equal(csp, CONSOLE_CSP)
    assert.match(csp, /script-src 'self'(;|$)/, 'scripts from the origin only')
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/, 'no inline script, no other origin')
    const scripts = await page
      .locator('script')
      .evaluateAll((all) =>
        all.map((s) => ({ src: s.getAttribute('src'), inline: (s.textContent ?? '').trim().length })),
      )
    assert.deepEqual(scripts, [{ src: '/console/console.js', inline: 0 }])
    await page.waitForSelector('body[data-ready="true"]')
    assert.deepEqual(problems, [], 'no CSP violation or script error')
  })

  test('signs in with the owner key from the keyboard, keeping it in memory only', async () => {
    // The skip link is the first stop, then the key field.
    await page.keyboard.press('Tab')
    assert.equal(await page.locator(':focus').textContent(), 'Skip to content')
    await page.focus('#signin-key')
    await page.keyboard.type(srv.ownerKey)
    await page.keyboard.press('Enter')
    await page.waitForSelector('#app:not([hidden])')
    await page.waitForSelector('#keys-table tbody tr[data-key-id]')
    assert.equal(await page.inputValue('#signin-key'), '', 'the field is cleared')
    const stored = await inPage<Record<string, string>>(
      '({ local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }), cookie: document.cookie })',
    )
    assert.deepEqual(stored, { local: '{}', session: '{}', cookie: '' })
    assert.deepEqual(await context.cookies(), [])
    assert.match(
      (await page.textContent('#keys-table tbody')) ?? '',
      /active \(you\)/,
      'the owner key is listed',
    )
    await shot('1-signed-in')
  })

  test('creates a key, shows its secret once with a copy button, and lists it with its countdown', async () => {
    await page.fill('#create-comment', 'browser key')
    await page.fill('#create-scopes', 'usage:write')
    await page.fill('#create-end-user', END_USER)
    await page.fill('#create-ttl', '3600')
    await page.click('#create-form button[type=submit]')
    await page.waitForSelector('#secret:not([hidden])')
    const secret = await page.inputValue('#secret-value')
    recordSecrets(secret)
    assert.ok(secret.length >= 20, 'a secret is shown')
    assert.equal(await page.locator(':focus').getAttribute('id'), 'secret', 'focus moves to the secret')
    await page.getByRole('button', { name: 'Copy' }).click()
    assert.equal(await inPage('navigator.clipboard.readText()'), secret, 'copied to the clipboard')
    const row = page.locator('#keys-table tbody tr', { hasText: 'browser key' })
    await row.waitFor()
    assert.match((await row.textContent()) ?? '', new RegExp(END_USER))
    const countdown = row.locator('.countdown')
    const first = (await countdown.textContent()) ?? ''
    assert.match(first, /^00:59:[45]\d$/, `about an hour left: ${first}`)
    await until(async () => (await countdown.textContent()) !== first, 3000, 'the countdown to move')
    const second = (await countdown.textContent()) ?? ''
    assert.ok(second < first, `it counts down: ${first} → ${second}`)
    await shot('2-key-created')
    await page.getByRole('button', { name: 'Done' }).click()
    assert.equal(await page.isHidden('#secret'), true, 'the secret is gone once dismissed')
    assert.equal(await page.inputValue('#secret-value'), '')
    // The key works: it transcribes real speech, which the usage chart shows later.
    const pcm = concatPcm(silence(0.3), await speech('open the door please'), silence(0.5))
    const res = await fetch(`${srv.url}/v1/listen?${RAW}`, {
      method: 'POST',
      headers: { authorization: `Token ${secret}`, 'content-type': 'application/octet-stream' },
      body: Buffer.from(pcm.buffer),
    })
    assert.equal(res.status, 200)
  })

  test('closes a real live stream from the page: the client socket closes 1008 AUTH-0001', async () => {
    const grant = await api('POST', '/v1/auth/grant', { ttl_seconds: 600, end_user: END_USER })
    const token = grant.access_token as string
    recordSecrets(token)
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['bearer', token],
    })
    assert.equal(log.status, undefined, 'the stream opened')
    const requestId = String(log.headers?.['dg-request-id'])
    let sending = true
    cleanups.push(() => {
      sending = false
      ws.terminate()
    })
    void closed.then(() => {
      sending = false
    })
    // Real speech, paced in real time, then silence until the server closes it.
    const speaking = (async () => {
      const pcm = concatPcm(silence(0.3), await speech('the weather is fine today'), silence(0.3))
      await sendPcm(ws, pcm, 100, true)
      while (sending && ws.readyState === ws.OPEN) {
        ws.send(Buffer.alloc(3200))
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    const row = page.locator(`#streams-table tr[data-request-id="${requestId}"]`)
    await row.waitFor({ timeout: 10_000 })
    assert.match((await row.textContent()) ?? '', new RegExp(END_USER))
    await page.waitForSelector('#grants-table tbody tr[data-jti]')
    await shot('3-live-stream')
    const clickedAt = Date.now()
    await row.getByRole('button', { name: /Close stream/ }).click()
    const seen = await Promise.race([
      closed,
      new Promise<never>((_, no) => setTimeout(() => no(new Error('the socket did not close in 5 s')), 5000)),
    ])
    assert.deepEqual(seen.close, { code: 1008, reason: 'AUTH-0001' })
    console.log(`console close click → client socket closed: ${Date.now() - clickedAt} ms`)
    await speaking
    await row.waitFor({ state: 'detached', timeout: 5000 })
    assert.match((await page.textContent('#status')) ?? '', /its grant token is revoked/)
    await shot('4-stream-closed')
  })

  test('draws the usage chart from the traffic made above, per end user', async () => {
    await page.selectOption('#usage-group', 'end_user')
    await page.selectOption('#usage-resolution', 'minute')
    await page.selectOption('#usage-metric', 'minutes')
    await page.click('#usage-form button[type=submit]')
    // The table sits in a closed <details>: attached, not visible.
    await page
      .locator('#usage-table thead th', { hasText: END_USER })
      .waitFor({ state: 'attached', timeout: 10_000 })
    const caption = (await page.textContent('#usage-caption')) ?? ''
    const total = Number(/([\d.]+) in total/.exec(caption)?.[1])
    // Two utterances of real speech with silence around them: a few seconds, well under a minute.
    assert.ok(total > 0.02 && total < 1, `audio minutes in the chart: ${caption}`)
    assert.equal(await page.locator('#usage-chart canvas').count(), 1, 'uPlot drew a canvas')
    // Pixels of the first series' colour on the canvas: the line was drawn, not only the axes.
    const coloured = await inPage<number>(`(() => {
      const c = document.querySelector('#usage-chart canvas')
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
      const near = (x, y) => Math.abs(x - y) < 40
      let n = 0
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] > 200 && near(px[i], 31) && near(px[i + 1], 111) && near(px[i + 2], 235)) n++
      }
      return n
    })()`)
    assert.ok(coloured > 20, `series pixels on the canvas: ${coloured}`)
    await page.selectOption('#usage-metric', 'requests')
    await page.locator('#usage-caption', { hasText: 'Requests per end user' }).waitFor()
    await shot('5-usage-chart')
    // Authentication failures per key: a deleted key tried twice is one auth.refused event in its minute.
    const made = await api('POST', `/v1/projects/${srv.projectId}/keys`, {
      comment: 'gone',
      scopes: ['member'],
    })
    recordSecrets(made.key as string)
    await api('DELETE', `/v1/projects/${srv.projectId}/keys/${made.api_key_id}`)
    const refused = await fetch(`${srv.url}/v1/auth/token`, {
      headers: { authorization: `Token ${made.key}` },
    })
    assert.equal(refused.status, 401)
    await page.selectOption('#usage-group', 'key')
    await page.selectOption('#usage-metric', 'auth_failures')
    await page
      .locator('#usage-table thead th', { hasText: String(made.api_key_id) })
      .waitFor({ state: 'attached', timeout: 10_000 })
    assert.match(
      (await page.textContent('#usage-caption')) ?? '',
      /Authentication failures per key.*1 series, 1 in total/,
    )
    await shot('5b-auth-failures-chart')
  })

  test('has no serious or critical axe-core violation, signed in, at desktop and phone widths', async () => {
    await inPage(await readFile(join(ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8'))
    const audit = async (what: string) => {
      const result = await inPage<{
        violations: { id: string; impact: string; nodes: { target: string[] }[] }[]
      }>("axe.run(document, { resultTypes: ['violations'] })")
      const bad = result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)
      assert.deepEqual(bad, [], `${what}: serious or critical violations`)
      return result.violations.length
    }
    const wide = await audit('desktop')
    await page.setViewportSize({ width: 390, height: 844 })
    await page.waitForTimeout(300)
    const narrow = await audit('phone')
    const overflow = await inPage<number>('document.documentElement.scrollWidth - window.innerWidth')
    assert.ok(overflow <= 0, `no sideways scrolling of the page at phone width (${overflow} px too wide)`)
    await shot('6-phone')
    console.log(`axe-core: ${wide} minor or moderate violations at desktop width, ${narrow} at phone width`)
    assert.deepEqual(problems, [], 'no CSP violation or script error all along')
  })
})
