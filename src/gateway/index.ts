/**
 * The HTTP ingress of a node: one server, routes by host and path to HTTP branes.
 */
export { Gateway, STATUS_BY_ERROR, OverloadedError, PayloadTooLargeError, UnauthorizedError, type GatewayInit, type GatewayComponents } from './gateway.ts'
export { Router, type RouteEntry, type RouteMatch } from './router.ts'

import { Gateway, type GatewayComponents, type GatewayInit } from './gateway.ts'

/** Factory in the house style: `gateway(init)(components)` */
export function gateway (init: GatewayInit = {}): (components: GatewayComponents) => Gateway {
  return (components) => new Gateway(components, init)
}
