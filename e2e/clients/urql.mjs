// urql for Tidemark: queries and mutations over HTTP with the bearer token,
// streams over graphql-ws through subscriptionExchange.
import { Client, fetchExchange, gql, subscriptionExchange } from '@urql/core';
import { createClient as createWSClient } from 'graphql-ws';
import WebSocket from 'ws'; // Node only: browsers have WebSocket built in

export function createTidemarkUrql({ url, wsUrl, token }) {
  const wsClient = createWSClient({
    url: wsUrl, // wss://tidemark.example.com/graphql
    webSocketImpl: WebSocket, // Node only
    connectionParams: { Authorization: `Bearer ${token}` },
  });
  const client = new Client({
    url, // https://tidemark.example.com/graphql
    fetchOptions: () => ({ headers: { Authorization: `Bearer ${token}` } }),
    // No cacheExchange: sync operations must always reach the server.
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return {
            subscribe(sink) {
              const unsubscribe = wsClient.subscribe(input, sink);
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return { client, wsClient };
}

const WORK_ORDER_FIELDS = gql`
  fragment WorkOrderFields on WorkOrder {
    id siteId title description status priority assigneeId dueAt updatedAt deleted
  }
`;

// Pull: the changes after a checkpoint (null: from the start), a page at a time.
export async function pullWorkOrders(client, checkpoint, limit = 100) {
  const result = await client
    .query(
      gql`
        query Pull($checkpoint: CheckpointInput, $limit: Int!) {
          pullWorkOrders(checkpoint: $checkpoint, limit: $limit) {
            documents { ...WorkOrderFields }
            checkpoint { cursor }
          }
        }
        ${WORK_ORDER_FIELDS}
      `,
      { checkpoint, limit },
    )
    .toPromise();
  if (result.error) throw result.error;
  return result.data.pullWorkOrders;
}

// Push: returns the server's version of every row it did not write as sent.
export async function pushWorkOrders(client, rows) {
  const result = await client
    .mutation(
      gql`
        mutation Push($rows: [WorkOrderPushRow!]!) {
          pushWorkOrders(rows: $rows) { ...WorkOrderFields }
        }
        ${WORK_ORDER_FIELDS}
      `,
      { rows },
    )
    .toPromise();
  if (result.error) throw result.error;
  return result.data.pushWorkOrders;
}

// Stream: each event has a pull's shape; store its checkpoint.
export function streamWorkOrders(client, onEvent, onError) {
  const { unsubscribe } = client
    .subscription(gql`
      subscription Stream {
        streamWorkOrders {
          documents { ...WorkOrderFields }
          checkpoint { cursor }
        }
      }
      ${WORK_ORDER_FIELDS}
    `)
    .subscribe((result) => (result.error ? onError(result.error) : onEvent(result.data.streamWorkOrders)));
  return unsubscribe;
}
