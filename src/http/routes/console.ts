import type { FastifyInstance } from 'fastify'
import { buildConsoleAssets, CONSOLE_PATHS, type ConsoleAssets } from '../console-assets.js'

/**
 * The console's Content-Security-Policy (docs/console.md): scripts, styles and API calls from this origin
 * only, no inline script, no framing, no form posting elsewhere. uPlot sizes its elements through the CSSOM
 * (`element.style`), which `style-src 'self'` allows; it writes no inline `style` attribute markup.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

/**
 * `GET /` and the console's script and style sheet (an Earmark extension, docs/console.md): public files;
 * the page signs in with an API key that only the page's own API calls carry. Built with esbuild on the
 * first request and kept in memory for the app's life.
 */
export function consoleRoutes(app: FastifyInstance): void {
  let built: Promise<ConsoleAssets> | undefined
  const assets = () => {
    built ??= buildConsoleAssets().catch((err: unknown) => {
      built = undefined
      throw err
    })
    return built
  }
  for (const path of CONSOLE_PATHS) {
    // Pages, not API: left out of /openapi.json (docs/openapi.md).
    app.get(path, { schema: { hide: true } }, async (_req, reply) => {
      const file = (await assets()).files.get(path)
      if (!file) throw new Error(`no console file for ${path}`)
      return reply
        .header('content-security-policy', CONSOLE_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY')
        .header('cache-control', 'no-store')
        .type(file.type)
        .send(file.body)
    })
  }
}
