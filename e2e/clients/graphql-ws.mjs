// Plain graphql-ws for Tidemark: one websocket (the graphql-transport-ws
// subprotocol) carries the streams, and can carry pulls and pushes too.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws'; // Node only: browsers have WebSocket built in

export function createTidemarkSocket({ wsUrl, token }) {
  return createClient({
    url: wsUrl, // wss://tidemark.example.com/graphql
    webSocketImpl: WebSocket, // Node only
    // Called on every (re)connect: return the current token.
    connectionParams: () => ({ Authorization: `Bearer ${token}` }),
    retryAttempts: Infinity, // Tidemark closes with 1013 or 4403; reconnect and resync
  });
}

const WORK_ORDER_FIELDS = `
  fragment WorkOrderFields on WorkOrder {
    id siteId title description status priority assigneeId dueAt updatedAt deleted
  }
`;

// One result of a query or mutation over the socket.
async function run(client, query, variables) {
  const result = await client.iterate({ query, variables }).next();
  if (result.value.errors) throw new Error(result.value.errors.map((e) => e.message).join('; '));
  return result.value.data;
}

// Pull: the changes after a checkpoint (null: from the start), a page at a time.
export async function pullWorkOrders(client, checkpoint, limit = 100) {
  const data = await run(
    client,
    `query Pull($checkpoint: CheckpointInput, $limit: Int!) {
      pullWorkOrders(checkpoint: $checkpoint, limit: $limit) {
        documents { ...WorkOrderFields }
        checkpoint { cursor }
      }
    }
    ${WORK_ORDER_FIELDS}`,
    { checkpoint, limit },
  );
  return data.pullWorkOrders;
}

// Push: returns the server's version of every row it did not write as sent.
export async function pushWorkOrders(client, rows) {
  const data = await run(
    client,
    `mutation Push($rows: [WorkOrderPushRow!]!) {
      pushWorkOrders(rows: $rows) { ...WorkOrderFields }
    }
    ${WORK_ORDER_FIELDS}`,
    { rows },
  );
  return data.pushWorkOrders;
}

// Stream: each event has a pull's shape; store its checkpoint.
export function streamWorkOrders(client, onEvent, onError) {
  return client.subscribe(
    {
      query: `subscription Stream {
        streamWorkOrders {
          documents { ...WorkOrderFields }
          checkpoint { cursor }
        }
      }
      ${WORK_ORDER_FIELDS}`,
    },
    {
      next: ({ data, errors }) => (errors ? onError(errors) : onEvent(data.streamWorkOrders)),
      error: onError,
      complete: () => {},
    },
  );
}
