/**
 * Apps: a node (or a mesh) runs several manifests side by side, each an app with a name.
 * Their plans are combined into one, in which every brane remembers its app and its
 * manifest. Apps share the gateway and the event queue, so two apps may not both have a
 * brane of the same name, serve the same route on the same host, or publish the same
 * resolver: such a pair is refused, naming both apps.
 */
import { basename, extname } from 'node:path'
import { DeploymentError } from '../errors.ts'
import type { BranePlan, HttpRoute, Plan } from './plan.ts'
import { APP_NAME_PATTERN } from './vocabulary.ts'

const APP_NAME = new RegExp(APP_NAME_PATTERN)

/** One app: its name and its plan */
export interface AppPlan {
  readonly name: string
  readonly plan: Plan
}

/** Whether `name` is a valid app name (lowercase letters, digits, `.`, `-`, `_`; at most 64) */
export function isAppName (name: string): boolean {
  return APP_NAME.test(name)
}

/**
 * The name of the app a manifest file is: its `[app] name`, or the file name without its
 * extension, lowercased, with what an app name cannot hold turned into `-`
 */
export function appNameOf (file: string, plan?: Pick<Plan, 'app'>): string {
  if (plan?.app !== undefined) {
    return plan.app
  }
  const stem = basename(file, extname(file)).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64)
  return stem === '' ? 'app' : stem
}

/** What {@link combineApps} made: the combined plan, and the apps left out with the reason */
export interface CombinedApps {
  readonly plan: Plan
  readonly refused: ReadonlyMap<string, string>
}

/**
 * One plan running every app of `apps`. An app that collides with one before it (a brane
 * name, a route on the same host, a resolver's name or host) is refused: with
 * `conflicts: 'throw'` the whole call throws a DeploymentError naming both apps, with
 * `'skip'` the later app is left out and listed in `refused` (what a mesh does with
 * deployments that raced each other: every node orders them alike and skips the same).
 */
export function combineApps (apps: readonly AppPlan[], options: { conflicts?: 'throw' | 'skip' } = {}): CombinedApps {
  const branes: BranePlan[] = []
  const edges: Array<Plan['edges'][number]> = []
  const resolvers: Array<Plan['resolvers'][number]> = []
  const refused = new Map<string, string>()
  const owners = { brane: new Map<string, string>(), route: new Map<string, string>(), resolver: new Map<string, string>(), host: new Map<string, string>() }
  let replicated = false
  const kept: AppPlan[] = []
  for (const app of apps) {
    const clash = collision(app, owners)
    if (clash !== undefined) {
      const message = `app "${app.name}" cannot run beside app "${clash.app}": both ${clash.what} (rename one, or remove one of the apps)`
      if (options.conflicts !== 'skip') {
        throw new DeploymentError(`Refusing ${message}`)
      }
      refused.set(app.name, message)
      continue
    }
    kept.push(app)
    for (const brane of app.plan.branes) {
      owners.brane.set(brane.name, app.name)
      for (const route of brane.routes) {
        owners.route.set(routeKey(route), app.name)
      }
      branes.push({ ...brane, app: app.name, manifest: app.plan.file })
    }
    for (const resolver of app.plan.resolvers) {
      owners.resolver.set(resolver.name, app.name)
      owners.host.set(resolver.host, app.name)
    }
    edges.push(...app.plan.edges)
    resolvers.push(...app.plan.resolvers)
    replicated ||= app.plan.durability === 'replicated'
  }
  const first = kept[0]?.plan
  return {
    plan: {
      file: first?.file ?? '',
      ...(first?.name === undefined ? {} : { name: first.name }),
      ...(kept.length === 1 && first?.app !== undefined ? { app: first.app } : {}),
      branes,
      edges,
      resolvers,
      // one queue serves every app: the strongest durability any of them asks for
      durability: replicated ? 'replicated' : 'local'
    },
    refused
  }
}

/** What `app` shares with an app already taken, if anything */
function collision (app: AppPlan, owners: Record<'brane' | 'route' | 'resolver' | 'host', ReadonlyMap<string, string>>): { app: string, what: string } | undefined {
  for (const brane of app.plan.branes) {
    const other = owners.brane.get(brane.name)
    if (other !== undefined) {
      return { app: other, what: `have a brane named "${brane.name}"` }
    }
    for (const route of brane.routes) {
      const owner = owners.route.get(routeKey(route))
      if (owner !== undefined) {
        return { app: owner, what: `serve the route ${describeRoute(route)}` }
      }
    }
  }
  for (const resolver of app.plan.resolvers) {
    const byName = owners.resolver.get(resolver.name)
    if (byName !== undefined) {
      return { app: byName, what: `have a resolver named "${resolver.name}"` }
    }
    const byHost = owners.host.get(resolver.host)
    if (byHost !== undefined) {
      return { app: byHost, what: `publish the host ${resolver.host}` }
    }
  }
  return undefined
}

/** Routes collide when they serve the same path (and wildcard) on the same host (or on any) */
function routeKey (route: HttpRoute): string {
  return `${route.host ?? '*'} ${route.path}${route.wildcard ? '*' : ''}`
}

function describeRoute (route: HttpRoute): string {
  return `"${route.path}${route.wildcard ? '*' : ''}"${route.host === undefined ? '' : ` on host ${route.host}`}`
}
