import type { QuotaLease } from './quota-enforcer.js'

/**
 * `pcm` passed through while `lease` allows it: the chunk that crosses the allowance is cut to it, to the
 * sample, and the next pull throws the lease's 429. A pre-recorded request thus decodes, and is billed, no
 * more than what its quotas left (docs/quotas.md "Pre-recorded requests").
 */
export async function* withinQuota(
  pcm: AsyncIterable<Int16Array>,
  lease: QuotaLease,
  sampleRate: number,
): AsyncGenerator<Int16Array> {
  for await (const chunk of pcm) {
    const asked = chunk.length / sampleRate
    const granted = lease.take(asked)
    if (granted >= asked) {
      yield chunk
      continue
    }
    const part = chunk.subarray(0, Math.min(chunk.length, Math.floor(granted * sampleRate + 1e-6)))
    if (part.length > 0) yield part
    throw lease.refuse()
  }
}
