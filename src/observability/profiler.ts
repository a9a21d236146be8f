/**
 * Opt-in CPU profiling for benchmarks: with `CPU_PROFILE_FILE=/path/x.cpuprofile` the
 * process records a V8 CPU profile from start to shutdown (node:inspector; `--cpu-prof`
 * is not allowed in NODE_OPTIONS) and writes it on drain. Open it in Chrome DevTools or
 * summarise it with `tsx scripts/profile-summary.ts FILE`.
 */
import { writeFileSync } from 'node:fs';

/** Start profiling when `file` is set; resolves a function that stops and writes the profile. */
export async function startCpuProfile(file: string | undefined): Promise<() => Promise<void>> {
  if (!file) return async () => {};
  // Loaded only when profiling: the inspector modules cost memory in every process.
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}
