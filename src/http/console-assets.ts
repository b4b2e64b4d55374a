import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

/** Where the console's sources live (`web/console/`). */
const CONSOLE_DIR = fileURLToPath(new URL('../../web/console/', import.meta.url))

/** The console's three files, by URL path, with their content types. */
export interface ConsoleAssets {
  readonly files: ReadonlyMap<string, { type: string; body: Buffer }>
}

/** The URL paths the console is served at. */
export const CONSOLE_PATHS = ['/', '/console/console.js', '/console/console.css'] as const

/**
 * Bundles the console (docs/console.md) in memory with esbuild: its script with uPlot inside, and one style
 * sheet (uPlot's and the console's). Everything comes from the repository and node_modules: nothing is
 * fetched from a CDN, at build time or in the browser.
 */
export async function buildConsoleAssets(): Promise<ConsoleAssets> {
  const result = await build({
    entryPoints: { console: `${CONSOLE_DIR}console.ts` },
    outdir: '/console',
    write: false,
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    // Not web/tsconfig.json: its `paths` point the type checker at uPlot's declarations, not its code.
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true } },
    logLevel: 'silent',
  })
  const out = (ext: string) => {
    const file = result.outputFiles.find((f) => f.path.endsWith(ext))
    if (!file) throw new Error(`the console build made no ${ext} file`)
    return Buffer.from(file.contents)
  }
  return {
    files: new Map([
      ['/', { type: 'text/html; charset=utf-8', body: await readFile(`${CONSOLE_DIR}index.html`) }],
      ['/console/console.js', { type: 'text/javascript; charset=utf-8', body: out('.js') }],
      ['/console/console.css', { type: 'text/css; charset=utf-8', body: out('.css') }],
    ]),
  }
}
