import { runCli } from '../../src/cli/cli.js'

/** Runs the CLI in-process on `dataDir`, capturing what it prints. */
export async function cli(dataDir: string, ...args: string[]) {
  let out = ''
  let err = ''
  const code = await runCli(['--data-dir', dataDir, ...args], {
    out: (t) => {
      out += t
    },
    err: (t) => {
      err += t
    },
    env: {},
  })
  return { code, out, err, json: () => JSON.parse(out) }
}
