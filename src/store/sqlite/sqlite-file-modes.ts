import { closeSync, mkdirSync, openSync, statSync } from 'node:fs'
import { dirname } from 'node:path'

/** The data directory: owner only. */
export const DATA_DIR_MODE = 0o700
/** The database and its `-wal`/`-shm`: owner only, since they hold the raw grant-signing secrets. */
export const DATABASE_FILE_MODE = 0o600

/**
 * Creates the database's directory (0700) and the empty database file (0600) when they do not exist, so
 * SQLite opens a file only its owner can read; SQLite gives the `-wal` and `-shm` files it creates the
 * database file's mode. Existing paths are left as they are (see `widePermissions`).
 */
export function prepareDatabasePath(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: DATA_DIR_MODE })
  try {
    closeSync(openSync(path, 'wx', DATABASE_FILE_MODE))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
}

/** A path whose permissions let other users in, with its mode as octal text (`0755`). */
export interface WidePermission {
  path: string
  mode: string
}

/**
 * The data directory, database, `-wal` and `-shm` files that group or other users may read or enter
 * (any of the 0o077 bits set). Missing files are skipped.
 */
export function widePermissions(path: string): WidePermission[] {
  const found: WidePermission[] = []
  for (const p of [dirname(path), path, `${path}-wal`, `${path}-shm`]) {
    let mode: number
    try {
      mode = statSync(p).mode & 0o777
    } catch {
      continue
    }
    if ((mode & 0o077) !== 0) found.push({ path: p, mode: `0${mode.toString(8)}` })
  }
  return found
}
