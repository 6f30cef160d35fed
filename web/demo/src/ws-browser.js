// RxDB's GraphQL replication imports { WebSocket } from 'ws' for Node; in
// the browser the platform's own WebSocket is the one to use.
export const WebSocket = globalThis.WebSocket;
export default globalThis.WebSocket;
