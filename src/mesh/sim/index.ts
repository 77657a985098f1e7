/**
 * The mesh simulator: the real membership protocol of thousands of nodes in one process,
 * over a virtual network and a virtual clock (see {@link Simulation}).
 *
 * @example
 * ```ts
 * const sim = new Simulation({ seed: 1, network: { loss: 0.01 } })
 * sim.form(1000)
 * await sim.run(30_000)
 * const joiner = sim.join()
 * sim.watch(joiner.did, 'join')
 * await sim.runUntil(() => reached(sim.spread(joiner.did)!, 1) !== undefined, 30_000)
 * ```
 */
export { DEFAULT_NETWORK, SimNode, Simulation, quantile, reached } from './simulation.ts'
export type { NetworkSettings, SimulationInit, Spread, Traffic } from './simulation.ts'
export { Prng } from './prng.ts'
export { Scheduler, SIM_EPOCH_MS } from './scheduler.ts'
export type { Owner, ScheduledEvent } from './scheduler.ts'
