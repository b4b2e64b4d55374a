#!/usr/bin/env node
// Runs the TypeScript sources through tsx: no build step between a clone and a running server.
import { availableParallelism } from 'node:os'
import { register } from 'tsx/esm/api'

// Speech decoding runs on libuv's threadpool (koffi async calls): give it room for every stream plus the
// pool's other users. It is sized at first use, so this must happen before anything else.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(16, availableParallelism() * 4))
register()
await import('../src/cli/main.ts')
