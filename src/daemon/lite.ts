/**
 * The part of the daemon module a command needs to talk to a running daemon: the admin
 * client, which loads none of the server, runtimes or mesh.
 */
export { ADMIN_SOCKET, AdminRequestError, adminBytes, adminJson, adminStream, DaemonNotRunningError, MAX_RESTORE_BODY_BYTES, type AdminClientOptions } from './admin-client.ts'
