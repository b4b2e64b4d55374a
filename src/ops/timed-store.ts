import type { Store } from '../store/index.js'

/**
 * `store` with every call that returns a promise timed to its settling and told to `observe` under the
 * method's name (`earmark_store_operation_seconds`, docs/metrics.md). Wrapped once at composition time, so
 * both backends are measured alike and neither knows of metrics. Synchronous calls (`credentialsVersion`,
 * read on every request) pass through untimed.
 */
export function timedStore(store: Store, observe: (operation: string, seconds: number) => void): Store {
  const wrapped = new Map<PropertyKey, unknown>()
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown
      if (typeof value !== 'function' || typeof property !== 'string') return value
      let timed = wrapped.get(property)
      if (!timed) {
        const method = value as (...args: unknown[]) => unknown
        timed = (...args: unknown[]) => {
          const started = performance.now()
          const result = method.apply(target, args)
          if (!(result instanceof Promise)) return result
          const done = () => observe(property, (performance.now() - started) / 1000)
          result.then(done, done)
          return result
        }
        wrapped.set(property, timed)
      }
      return timed
    },
  })
}
