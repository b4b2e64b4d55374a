import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium } from 'playwright-core'
import { createTestEarmark, type TestEarmark } from '../helpers/earmark.js'

describe('the docs page in headless Chromium', () => {
  let em: TestEarmark
  let browser: Browser
  let origin: string

  before(async () => {
    em = await createTestEarmark()
    await em.app.listen({ port: 0, host: '127.0.0.1' })
    origin = `http://127.0.0.1:${(em.app.server.address() as AddressInfo).port}`
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    })
  })
  after(async () => {
    await browser?.close()
    await em.close()
  })

  it('renders every operation of /openapi.json from this origin alone, with no console error', async () => {
    const page = await browser.newPage()
    const requested: string[] = []
    const errors: string[] = []
    page.on('request', (r) => requested.push(r.url()))
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text())
    })
    page.on('pageerror', (e) => errors.push(e.message))
    const res = await page.goto(`${origin}/docs`)
    assert.equal(res?.status(), 200)
    await page.waitForSelector('.opblock-summary', { timeout: 30_000 })
    const doc = (await (await fetch(`${origin}/openapi.json`)).json()) as { paths: Record<string, object> }
    const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0)
    assert.equal(await page.locator('.opblock-summary').count(), operations, 'one block per operation')
    // An extension's description says so once its block is opened.
    await page.locator('.opblock-summary', { hasText: '/healthz' }).first().click()
    await page.getByText('Earmark extension').first().waitFor({ timeout: 10_000 })
    assert.deepEqual(
      requested.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:')),
      [],
      'requests to other hosts',
    )
    assert.deepEqual(errors, [], 'console errors (a blocked script or style would show here)')
    await page.close()
  })
})
