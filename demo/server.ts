import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join, resolve } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { earmarkAppKit } from '../src/app-kit/index.js'
import { loadConfig } from '../src/config/index.js'
import { createEarmark, type Earmark } from '../src/main.js'
import { buildPage, DEFAULT_BUILD_DIR, PAGE_FILES, type PagePath } from './build.js'

export interface DemoOptions {
  /** Address both servers listen on (default `127.0.0.1`: `http://127.0.0.1` is a secure context). */
  host?: string
  /** The demo app's port (default 3000; 0: any free port). */
  port?: number
  /** Earmark's port (default 8080; 0: any free port). */
  earmarkPort?: number
  /** Earmark's data directory (default `./data/demo`); the app server's key is kept in it. */
  dataDir?: string
  /** Where the page is built (default `.demo-build/`). */
  buildDir?: string
  /** Earmark's URL as browsers reach it (default: the page's host name on Earmark's port). */
  earmarkPublicUrl?: string
  /** More `EARMARK_*` settings for the speech server (see README, Configuration). */
  env?: NodeJS.ProcessEnv
}

export interface Demo {
  /** The page to open, e.g. `http://127.0.0.1:3000/`. */
  url: string
  /** Earmark, e.g. `http://127.0.0.1:8080`. */
  earmarkUrl: string
  /** The app server's own key (a `member` key): used server-side only, never sent to a browser. */
  appServerKey: string
  earmark: Earmark
  app: FastifyInstance
  /** Stops the demo app, then Earmark. */
  close(): Promise<void>
}

/** Where the app kit's routes live. */
export const PREFIX = '/earmark'
const USER_COOKIE = 'demo_user'
const USER_ID = /^[A-Za-z0-9._-]{1,64}$/
const KEY_FILE = 'demo-app-server-key'

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === name) return decodeURIComponent(v.join('='))
  }
  return undefined
}

function queryUser(req: IncomingMessage): string | null {
  return new URL(req.url ?? '/', 'http://demo.invalid').searchParams.get('user')
}

/**
 * The demo's idea of who is signed in: `?user=` on the request, else the `demo_user` cookie the page set.
 * A real app would check its own session here. Cookies ride along on cross-site requests and WebSocket
 * upgrades too, so a request from another origin is refused (cross-site WebSocket hijacking).
 */
export function demoAuthorize(req: IncomingMessage): { endUser: string } | null {
  const origin = req.headers.origin
  if (origin) {
    let host: string
    try {
      host = new URL(origin).host
    } catch {
      return null
    }
    if (host !== req.headers.host) return null
  }
  const user = queryUser(req) ?? cookie(req, USER_COOKIE)
  return user && USER_ID.test(user) ? { endUser: user } : null
}

/**
 * The app server's key: made once per data directory, as a `member` key (it may create keys and grant
 * tokens, nothing an owner alone may do), and kept in the data directory. The generated owner key is not
 * kept: `earmark` CLI commands work on the data directory directly.
 */
async function appServerKey(earmark: Earmark, dataDir: string, bootstrapKey?: string): Promise<string> {
  const file = join(dataDir, KEY_FILE)
  const owner = earmark.bootstrap && (earmark.bootstrap.generatedSecret ?? bootstrapKey)
  const projectId = earmark.bootstrap?.project.id
  if (!owner || !projectId) {
    // Not a new store: the key made when it was created.
    if (existsSync(file)) return (await readFile(file, 'utf8')).trim()
    throw new Error(
      `${dataDir} holds a store but no ${KEY_FILE}: remove the directory to start the demo afresh`,
    )
  }
  const res = await earmark.app.inject({
    method: 'POST',
    url: `/v1/projects/${projectId}/keys`,
    headers: { authorization: `Token ${owner}`, 'content-type': 'application/json' },
    payload: { comment: 'demo app server', scopes: ['member'] },
  })
  if (res.statusCode !== 200) throw new Error(`could not create the app server's key: ${res.body}`)
  const { key } = res.json<{ key: string }>()
  await writeFile(file, `${key}\n`, { mode: 0o600 })
  return key
}

/** The demo app: the page, its config, and the app kit under {@link PREFIX}. */
async function createDemoApp(options: {
  page: Map<PagePath, Buffer>
  earmarkUrl: string
  earmarkPort: number
  earmarkPublicUrl: string | undefined
  appServerKey: string
}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(earmarkAppKit, {
    prefix: PREFIX,
    upstream: { url: options.earmarkUrl, apiKey: options.appServerKey },
    authorize: demoAuthorize,
  })

  app.addHook('onSend', async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    reply.header('x-content-type-options', 'nosniff')
  })

  for (const [path, { type }] of Object.entries(PAGE_FILES)) {
    const body = options.page.get(path as PagePath)
    app.get(path, async (request, reply) => {
      if (path === '/') {
        // Sign the visitor in: `?user=` picks the id, otherwise a random one is kept in a cookie.
        const asked = queryUser(request.raw)
        const current = cookie(request.raw, USER_COOKIE)
        const user =
          asked && USER_ID.test(asked)
            ? asked
            : current && USER_ID.test(current)
              ? current
              : `user-${randomBytes(4).toString('hex')}`
        if (user !== current) {
          reply.header('set-cookie', `${USER_COOKIE}=${user}; Path=/; HttpOnly; SameSite=Strict`)
        }
        // Scripts, styles and the worklet from this origin only: nothing from a CDN.
        reply.header(
          'content-security-policy',
          "default-src 'self'; connect-src 'self' ws: wss: http: https:; img-src 'self' data:; object-src 'none'; base-uri 'none'",
        )
      }
      return reply.type(type).send(body)
    })
  }

  app.get('/config.json', async (request, reply) => {
    const who = demoAuthorize(request.raw)
    return reply.send({
      prefix: PREFIX,
      earmarkUrl: options.earmarkPublicUrl ?? null,
      earmarkPort: options.earmarkPort,
      user: who?.endUser ?? null,
    })
  })
  return app
}

/** Starts Earmark (in this process, with its own data directory) and the demo app in front of it. */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const host = options.host ?? '127.0.0.1'
  const dataDir = resolve(options.dataDir ?? 'data/demo')
  await mkdir(dataDir, { recursive: true })
  const page = await buildPage(options.buildDir ?? DEFAULT_BUILD_DIR)

  const config = loadConfig({
    EARMARK_LOG_LEVEL: 'warn',
    EARMARK_ACCESS_LOG: 'false',
    ...options.env,
    HOST: host,
    PORT: String(options.earmarkPort ?? 8080),
    EARMARK_DATA_DIR: dataDir,
    EARMARK_PROJECT_NAME: 'Earmark demo',
  })
  const earmark = await createEarmark(config)
  let app: FastifyInstance | undefined
  try {
    const key = await appServerKey(earmark, dataDir, config.bootstrapKey)
    const earmarkUrl = await earmark.app.listen({ host, port: config.port })
    const earmarkPort = Number(new URL(earmarkUrl).port)
    app = await createDemoApp({
      page,
      earmarkUrl,
      earmarkPort,
      earmarkPublicUrl: options.earmarkPublicUrl,
      appServerKey: key,
    })
    const url = await app.listen({ host, port: options.port ?? 3000 })
    const demoApp = app
    return {
      url: `${url}/`,
      earmarkUrl,
      appServerKey: key,
      earmark,
      app: demoApp,
      close: async () => {
        await demoApp.close()
        await earmark.close()
      },
    }
  } catch (err) {
    await app?.close()
    await earmark.close()
    throw err
  }
}
