import { defineCommandSafely, type RedisClient } from './redis-client.js'

/** A Lua script over any number of keys, run by hash (EVALSHA, loaded on first use). */
export type RedisMultiKeyScript = (keys: readonly string[], ...args: string[]) => Promise<unknown>

/**
 * Registers `lua` on `client` as `name`, taking its keys as a list: the stream caps and quota leases touch
 * one key per holder or bucket, and every key a script touches must be named in KEYS.
 */
export function defineMultiKeyScript(client: RedisClient, name: string, lua: string): RedisMultiKeyScript {
  // No numberOfKeys: ioredis then takes the key count as the first argument.
  defineCommandSafely(client, name, { lua })
  const command = (client as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[
    name
  ]
  if (typeof command !== 'function') throw new Error(`ioredis did not define the script ${name}`)
  return (keys, ...args) => command.call(client, keys.length, ...keys, ...args)
}
