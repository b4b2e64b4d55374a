import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { build } from 'esbuild'

const ROOT = new URL('..', import.meta.url).pathname
const WEB = join(ROOT, 'web')

/** Where `npm run demo` writes the page (git-ignored). */
export const DEFAULT_BUILD_DIR = join(ROOT, '.demo-build')

/** The files the demo serves, by URL path, with their content types. Nothing else is served. */
export const PAGE_FILES = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/main.js': { file: 'main.js', type: 'text/javascript; charset=utf-8' },
  '/pcm-worklet.js': { file: 'pcm-worklet.js', type: 'text/javascript; charset=utf-8' },
  '/styles.css': { file: 'styles.css', type: 'text/css; charset=utf-8' },
} as const

export type PagePath = keyof typeof PAGE_FILES

/**
 * Bundles `web/` for the browser into `outDir` (the page script with the Deepgram v5 SDK inside, and the
 * AudioWorklet processor on its own) and returns the served files' bytes. Everything comes from node_modules:
 * nothing is fetched from a CDN, at build time or in the browser.
 */
export async function buildPage(outDir = DEFAULT_BUILD_DIR): Promise<Map<PagePath, Buffer>> {
  await mkdir(outDir, { recursive: true })
  await build({
    entryPoints: { main: join(WEB, 'main.ts'), 'pcm-worklet': join(WEB, 'pcm-worklet.ts') },
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'inline',
    tsconfig: join(WEB, 'tsconfig.json'),
    logLevel: 'warning',
  })
  await copyFile(join(WEB, 'index.html'), join(outDir, 'index.html'))
  await copyFile(join(WEB, 'styles.css'), join(outDir, 'styles.css'))
  const files = new Map<PagePath, Buffer>()
  for (const [path, { file }] of Object.entries(PAGE_FILES)) {
    files.set(path as PagePath, await readFile(join(outDir, file)))
  }
  return files
}
